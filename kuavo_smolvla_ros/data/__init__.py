"""Recorded data: rosbags reading and writing (:mod:`.bags`, :mod:`.recording`), one bag -> its episodes on the
robot profile's streams, cut at breaks in time (:mod:`.episode`), LeRobot v3 writing (:mod:`.dataset`), the
conversion run (:mod:`.convert`, CLI :mod:`.cli`), dataset checks (:mod:`.validate`), and for tests and
benchmarks synthetic bags (:mod:`.synthetic`), damaged bags (:mod:`.damaged`) and fuzzed messages
(:mod:`.fuzz`)."""
