"""The thin rclpy layer: parameters, message conversions, the policy node."""
