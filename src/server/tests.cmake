add_executable(config_test config_test.cc)
target_link_libraries(config_test PRIVATE synod_server_config GTest::gtest_main GTest::gmock)
gtest_discover_tests(config_test PROPERTIES LABELS unit)

add_executable(transport_test transport_test.cc)
target_link_libraries(transport_test PRIVATE synod_transport GTest::gtest_main GTest::gmock)
gtest_discover_tests(transport_test PROPERTIES LABELS unit)
