# The peer transport and the Raft message codec.
add_library(synod_transport transport.cc raft_codec.cc multipaxos_codec.cc)
target_link_libraries(synod_transport
  PUBLIC synod_grpc synod_raft_types synod_multipaxos_types synod_base absl::synchronization absl::status
         absl::statusor
  PRIVATE spdlog::spdlog fmt::fmt absl::strings absl::time Threads::Threads)

add_executable(raft_codec_test raft_codec_test.cc)
target_link_libraries(raft_codec_test PRIVATE synod_transport GTest::gtest_main GTest::gmock)
gtest_discover_tests(raft_codec_test PROPERTIES LABELS unit)

add_executable(multipaxos_codec_test multipaxos_codec_test.cc)
target_link_libraries(multipaxos_codec_test PRIVATE synod_transport GTest::gtest_main GTest::gmock)
gtest_discover_tests(multipaxos_codec_test PROPERTIES LABELS unit)

# transport_test moves here from tests.cmake; until tests.cmake stops declaring it, declaring it
# twice would stop the whole tree from configuring (config.cmake does the same for config_test).
set(_synod_tests_cmake_transport_test "")
if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/tests.cmake)
  file(STRINGS ${CMAKE_CURRENT_SOURCE_DIR}/tests.cmake _synod_tests_cmake_transport_test
    REGEX "add_executable\\(transport_test")
endif()
if(NOT _synod_tests_cmake_transport_test)
  add_executable(transport_test transport_test.cc)
  target_link_libraries(transport_test PRIVATE synod_transport GTest::gtest_main GTest::gmock)
  gtest_discover_tests(transport_test PROPERTIES LABELS unit)
endif()
