# ROS 2 Python wheels (PyPI `ros-*`) ship CMake exports whose Python generator targets name include
# directories of the wheel build machine (/opt/python/cp312-cp312/...). CMake refuses imported targets
# with non-existent include paths. Drop those paths: rosidl_generator_py adds this interpreter's Python
# and numpy include directories to the generated targets itself. Targets from a regular ROS 2 install
# are left untouched.
function(kuavo_fix_wheel_include_dirs)
  foreach(_pkg ${ARGN})
    set(_target "${_pkg}::${_pkg}__rosidl_generator_py")
    if(NOT TARGET ${_target})
      continue()
    endif()
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_fixed "")
    foreach(_dir ${_dirs})
      if(NOT (_dir MATCHES "^/opt/python/" AND NOT EXISTS "${_dir}"))
        list(APPEND _fixed ${_dir})
      endif()
    endforeach()
    set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_fixed}")
  endforeach()
endfunction()

# When the Python environment lives inside the source tree (the repository's .venv/), the generated
# Python library's public include directories (Python, numpy) point into the source tree, which CMake
# refuses to export. Mark such directories as build-only: they are only needed to compile this package.
function(kuavo_build_only_include_dirs target)
  get_target_property(_dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
  if(NOT _dirs)
    return()
  endif()
  set(_fixed "")
  foreach(_dir ${_dirs})
    string(FIND "${_dir}" "${CMAKE_SOURCE_DIR}/" _in_source)
    if(_in_source EQUAL 0)
      list(APPEND _fixed "$<BUILD_INTERFACE:${_dir}>")
    else()
      list(APPEND _fixed "${_dir}")
    endif()
  endforeach()
  set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_fixed}")
endfunction()
