# Scripted scenario tests (STYLE.md, after etcd raft's interaction tests): every file in
# testdata/ is a script of commands with their expected output. SYNOD_REWRITE=1 rewrites the
# expected output in place, so a change of behaviour is reviewed as a diff of testdata/.
add_executable(raft_scenario_test
  ${CMAKE_CURRENT_SOURCE_DIR}/scenario_env.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/scenario_test.cc)
target_link_libraries(raft_scenario_test PRIVATE synod_raft GTest::gtest_main)
target_compile_definitions(raft_scenario_test
  PRIVATE SYNOD_RAFT_TESTDATA_DIR="${CMAKE_CURRENT_SOURCE_DIR}/testdata")
# PRE_TEST lists the tests when ctest runs, so a new testdata file is picked up without a rebuild.
gtest_discover_tests(raft_scenario_test DISCOVERY_MODE PRE_TEST PROPERTIES LABELS unit)
