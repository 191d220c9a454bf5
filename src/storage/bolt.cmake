# The bbolt file format (bolt_format.h): part of synod_storage, with its own test.
target_sources(synod_storage PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/bolt_reader.cc
  ${CMAKE_CURRENT_LIST_DIR}/bolt_writer.cc)

add_executable(bolt_test ${CMAKE_CURRENT_LIST_DIR}/bolt_test.cc)
target_link_libraries(bolt_test PRIVATE synod_storage GTest::gtest_main)
gtest_discover_tests(bolt_test PROPERTIES LABELS "unit;storage")
