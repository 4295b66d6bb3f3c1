# Finds cuDNN and NCCL in /usr/local/cuda, in CUDNN_ROOT / NCCL_ROOT (variables or environment),
# or in the pip wheels nvidia-cudnn-cu13 / nvidia-nccl-cu13 under the Python site-packages.
# Sets RG_CUDNN_FOUND, CUDNN_INCLUDE_DIR, CUDNN_LIBRARY and RG_NCCL_FOUND, NCCL_INCLUDE_DIR, NCCL_LIBRARY.
set(RG_CUDNN_FOUND OFF)
set(RG_NCCL_FOUND OFF)
if(NOT RG_WITH_CUDA)
  return()
endif()

set(_rg_pip_hints "")
find_program(_rg_python NAMES python3 python)
if(_rg_python)
  execute_process(COMMAND ${_rg_python} -c "import site,sys; print(';'.join(site.getsitepackages()+[site.getusersitepackages()]))"
                  OUTPUT_VARIABLE _rg_sites OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  foreach(_s IN LISTS _rg_sites)
    foreach(_pkg cudnn nccl)
      file(GLOB _cands "${_s}/nvidia/${_pkg}" "${_s}/nvidia/cu13/${_pkg}" "${_s}/nvidia/cu*/${_pkg}" "${_s}/nvidia/cu13")
      list(APPEND _rg_pip_hints ${_cands})
    endforeach()
  endforeach()
endif()

if(RINGGRAD_CUDNN)
  find_path(CUDNN_INCLUDE_DIR cudnn.h
            HINTS ${CUDNN_ROOT} $ENV{CUDNN_ROOT} ${CUDAToolkit_INCLUDE_DIRS} ${_rg_pip_hints}
            PATH_SUFFIXES include)
  find_library(CUDNN_LIBRARY NAMES cudnn libcudnn.so.9
               HINTS ${CUDNN_ROOT} $ENV{CUDNN_ROOT} ${CUDAToolkit_LIBRARY_DIR} ${_rg_pip_hints}
               PATH_SUFFIXES lib lib64)
  if(CUDNN_INCLUDE_DIR AND CUDNN_LIBRARY)
    set(RG_CUDNN_FOUND ON)
    message(STATUS "ringgrad: cuDNN ${CUDNN_LIBRARY}")
  else()
    message(STATUS "ringgrad: cuDNN not found; CUDA convolutions will use the im2col fallback")
  endif()
endif()

if(RINGGRAD_NCCL)
  find_path(NCCL_INCLUDE_DIR nccl.h
            HINTS ${NCCL_ROOT} $ENV{NCCL_ROOT} ${CUDAToolkit_INCLUDE_DIRS} ${_rg_pip_hints}
            PATH_SUFFIXES include)
  find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2
               HINTS ${NCCL_ROOT} $ENV{NCCL_ROOT} ${CUDAToolkit_LIBRARY_DIR} ${_rg_pip_hints}
               PATH_SUFFIXES lib lib64)
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    set(RG_NCCL_FOUND ON)
    message(STATUS "ringgrad: NCCL ${NCCL_LIBRARY}")
  else()
    message(STATUS "ringgrad: NCCL not found; the nccl backend is disabled")
  endif()
endif()
