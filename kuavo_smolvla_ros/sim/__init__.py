"""A simulated Kuavo for bring-up without hardware: kinematics, four tasks, rendering, a scripted expert."""
