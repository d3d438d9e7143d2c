"""Recorded data: rosbags reading/writing (conversion to LeRobot datasets arrives with issue 4)."""
