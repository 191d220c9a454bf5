# `synod paxos` (paxos_demo.h): a one-shot decision among real processes with the single-decree
# Paxos core. Every binary built from main.cc dispatches to it, so each links it.
function(synod_add_paxos_demo_library name paxos_core)
  add_library(${name} ${CMAKE_CURRENT_SOURCE_DIR}/paxos_demo.cc
                      ${CMAKE_CURRENT_SOURCE_DIR}/paxos_demo_process.cc)
  target_link_libraries(${name}
    PUBLIC ${paxos_core} synod_storage synod_grpc synod_base
    PRIVATE CLI11::CLI11 spdlog::spdlog fmt::fmt absl::synchronization absl::strings absl::time)
endfunction()

synod_add_paxos_demo_library(synod_paxos_demo synod_paxos)
foreach(member_binary ${SYNOD_MEMBER_BINARIES})
  if(TARGET ${member_binary})
    target_link_libraries(${member_binary} PRIVATE synod_paxos_demo)
  endif()
endforeach()

add_executable(paxos_demo_test ${CMAKE_CURRENT_LIST_DIR}/paxos_demo_test.cc)
target_link_libraries(paxos_demo_test PRIVATE synod_paxos_demo synod_sim_disk GTest::gtest_main)
gtest_discover_tests(paxos_demo_test PROPERTIES LABELS unit)

# A deliberately broken demo: the same process on the core whose proposers ignore the accepted
# values that promises report (SYNOD_BROKEN_IGNORE_ACCEPTED_VALUES, breaking P2c of "Paxos Made
# Simple" 2.2). tests/fault/paxos_demo_test.py must catch it. Never used otherwise.
if(TARGET synod_paxos_broken_ignore_accepted_values)
  synod_add_paxos_demo_library(synod_paxos_demo_broken_ignore_accepted_values
    synod_paxos_broken_ignore_accepted_values)
  add_executable(synod-paxos-broken-ignore-accepted-values
    ${CMAKE_CURRENT_LIST_DIR}/paxos_demo_broken_main.cc)
  target_link_libraries(synod-paxos-broken-ignore-accepted-values
    PRIVATE synod_paxos_demo_broken_ignore_accepted_values)
endif()
