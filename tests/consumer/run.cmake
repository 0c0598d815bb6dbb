# Installs dhtkit into a scratch prefix, then configures, builds and runs the consumer against it.
file(REMOVE_RECURSE ${WORK_DIR})
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer test: '${ARGN}' failed (${rc})")
  endif()
endfunction()
step(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/dhtkit-build -G ${GENERATOR}
     -DDHTKIT_BUILD_TESTS=OFF -DDHTKIT_BUILD_BENCHMARKS=OFF -DDHTKIT_BUILD_EXAMPLES=OFF)
step(${CMAKE_COMMAND} --install ${WORK_DIR}/dhtkit-build --prefix ${WORK_DIR}/prefix)
step(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/consumer-build -G ${GENERATOR}
     -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
step(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-build)
step(${WORK_DIR}/consumer-build/consumer)
step(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/subdir-build -G ${GENERATOR}
     -DDHTKIT_SOURCE=${SOURCE_DIR})
step(${CMAKE_COMMAND} --build ${WORK_DIR}/subdir-build)
step(${WORK_DIR}/subdir-build/consumer)
