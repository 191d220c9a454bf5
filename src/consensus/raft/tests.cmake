# Unit tests of the Raft core: log, progress, the paper's rules (raft_paper_test.cc) and the
# thesis extensions (raft_test.cc), on an in-memory cluster harness (test_cluster.h).
add_executable(raft_test
  ${CMAKE_CURRENT_SOURCE_DIR}/test_cluster.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/log_test.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/progress_test.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/raft_paper_test.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/raft_test.cc)
target_link_libraries(raft_test PRIVATE synod_raft absl::strings GTest::gtest_main)
gtest_discover_tests(raft_test PROPERTIES LABELS unit)
