"""2-D toy problems and a small residual MLP velocity network (the demo and the toy2d benchmark)."""
