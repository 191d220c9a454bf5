// A deliberately broken `synod paxos` (paxos_demo.cmake): the demo on a broken Paxos core. Only
// the fault test runs it, to show that it catches the break; it takes the same command line.

#include <string_view>

#include "server/paxos_demo.h"

int main(int argc, char** argv) {
  if (argc < 2 || std::string_view(argv[1]) != "paxos") return synod::server::kPaxosDemoExitUsage;
  return synod::server::RunPaxosDemo(argc - 2, argv + 2);
}
