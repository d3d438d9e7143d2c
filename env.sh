# Put everything this repository needs on the path:  source env.sh   (bash or zsh)
# The venv (lerobot, ROS 2 Kilted wheels), the colcon install of the interfaces, the source tree.
if [ -n "${BASH_SOURCE[0]:-}" ]; then _ksr_root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
elif [ -n "${ZSH_VERSION:-}" ]; then _ksr_root=$(cd "$(dirname "${(%):-%x}")" && pwd)
else _ksr_root=$(pwd); fi
if [ ! -f "$_ksr_root/.venv/bin/activate" ] || [ ! -f "$_ksr_root/install/local_setup.sh" ]; then
  echo "kuavo_smolvla_ros: run 'make setup' in $_ksr_root first" >&2
  unset _ksr_root
  return 1 2>/dev/null || exit 1
fi
. "$_ksr_root/.venv/bin/activate"
# The ROS 2 wheels install a ROS prefix into the venv.
case ":${AMENT_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *)
  export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;; esac
case ":${CMAKE_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *)
  export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}" ;; esac
COLCON_CURRENT_PREFIX="$_ksr_root/install" . "$_ksr_root/install/local_setup.sh"
# The source tree goes first so edits take effect without a rebuild; kuavo_smolvla_ros.msg is found
# in install/ (the package extends its __path__).
export PYTHONPATH="$_ksr_root${PYTHONPATH:+:$PYTHONPATH}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export HF_HUB_OFFLINE=1
# Shared-memory segment large enough for raw camera frames (see the file's comment).
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$_ksr_root/config/fastdds_profile.xml}"
unset _ksr_root
