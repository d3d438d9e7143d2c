"""Sequential multi-task training (no ROS): curriculum, datasets and statistics, replay sampling."""
