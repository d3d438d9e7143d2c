"""Recorded data: rosbags reading and writing (:mod:`.bags`, :mod:`.recording`), one bag -> one episode on the
robot profile's streams (:mod:`.episode`), LeRobot v3 writing (:mod:`.dataset`), the conversion run
(:mod:`.convert`, CLI :mod:`.cli`), dataset checks (:mod:`.validate`) and synthetic bags for tests."""
