# The loader's folders are layered (loader/CMakeLists.txt): a folder may
# include itself and the folders below it, never one above. Run as
#   cmake -DSOURCE_DIR=<repo> -P check_layering.cmake
# Fails naming every include that points up, and any folder that has no
# place in the layering yet.
cmake_minimum_required(VERSION 3.25)
set(below_base "")
set(below_containers containers)
set(below_numpy numpy containers)
set(below_keras_h5 keras_h5)
set(below_pickle pickle numpy containers)

set(errors "")
file(GLOB entries LIST_DIRECTORIES true RELATIVE ${SOURCE_DIR}/loader ${SOURCE_DIR}/loader/*)
foreach(entry ${entries})
  if(IS_DIRECTORY ${SOURCE_DIR}/loader/${entry})
    if(NOT DEFINED below_${entry})
      list(APPEND errors "loader/${entry}/ has no place in the layering (check_layering.cmake)")
      continue()
    endif()
    set(allowed ${below_${entry}})
    file(GLOB_RECURSE sources ${SOURCE_DIR}/loader/${entry}/*.h ${SOURCE_DIR}/loader/${entry}/*.cc)
  elseif(entry MATCHES "^(model|parser|stream)\\.(h|cc)$")
    set(allowed "")  # the base: no folder at all
    set(sources ${SOURCE_DIR}/loader/${entry})
  else()
    continue()  # registry, polyglot: the top may include everything
  endif()
  foreach(source ${sources})
    file(STRINGS ${source} includes REGEX "^#include \"loader/[a-z0-9_]+/")
    foreach(line ${includes})
      string(REGEX REPLACE "^#include \"loader/([a-z0-9_]+)/.*" "\\1" target "${line}")
      if(NOT target IN_LIST allowed)
        file(RELATIVE_PATH rel ${SOURCE_DIR} ${source})
        list(APPEND errors "${rel} includes loader/${target}/, which is not below it")
      endif()
    endforeach()
  endforeach()
endforeach()
if(errors)
  list(JOIN errors "\n  " text)
  message(FATAL_ERROR "loader layering violated:\n  ${text}")
endif()
message(STATUS "loader layering holds")
