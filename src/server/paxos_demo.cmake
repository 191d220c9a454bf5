# `synod paxos` (paxos_demo.h): a one-shot decision among real processes with the single-decree
# Paxos core. Every binary built from main.cc dispatches to it, so each links it.
add_library(synod_paxos_demo paxos_demo.cc paxos_demo_process.cc)
target_link_libraries(synod_paxos_demo
  PUBLIC synod_paxos synod_storage synod_grpc synod_base
  PRIVATE CLI11::CLI11 spdlog::spdlog fmt::fmt absl::synchronization absl::strings absl::time)
foreach(member_binary synod synod-broken-forgets-data synod-broken-read-without-quorum)
  if(TARGET ${member_binary})
    target_link_libraries(${member_binary} PRIVATE synod_paxos_demo)
  endif()
endforeach()

add_executable(paxos_demo_test ${CMAKE_CURRENT_LIST_DIR}/paxos_demo_test.cc)
target_link_libraries(paxos_demo_test PRIVATE synod_paxos_demo synod_sim_disk GTest::gtest_main)
gtest_discover_tests(paxos_demo_test PROPERTIES LABELS unit)
