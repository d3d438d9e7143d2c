"""A simulated Kuavo for bring-up without hardware: kinematics, four tasks, rendering, a scripted expert, the
recorder of its demonstrations (as bags of any robot profile) and closed-loop evaluation in simulated time."""
