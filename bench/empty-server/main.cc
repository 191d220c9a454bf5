// synod-empty-server: the ceiling of etcd's v3 API on this machine. It answers KV.Put, and
// nothing else, with an empty PutResponse at once: no consensus, no disk, no state. Driven by the
// same `synod-bench put` as etcd and synod (bench/compare), it measures what gRPC itself costs
// per call here, client and server sharing the machine; a real server can only be slower.
//
//   synod-empty-server --listen 127.0.0.1:23999
//
// It uses gRPC's callback API, so a call costs no thread of its own: the cheapest server
// gRPC 1.51 offers, which is what a ceiling should be. It runs until SIGINT or SIGTERM.

#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "base/stop_signals.h"
#include "etcd/etcdserverpb/rpc.grpc.pb.h"

namespace synod::bench {
namespace {

class EmptyKvService final : public etcdserverpb::KV::CallbackService {
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* context,
                                const etcdserverpb::PutRequest* /*request*/,
                                etcdserverpb::PutResponse* /*response*/) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

int Main(int argc, char** argv) {
  CLI::App app{"synod-empty-server: answers etcd's KV.Put without doing anything"};
  std::string listen = "127.0.0.1:23999";
  app.add_option("--listen", listen, "host:port to serve on");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }

  EmptyKvService service;
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &bound_port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    std::fprintf(stderr, "synod-empty-server: cannot listen on %s\n", listen.c_str());
    return 1;
  }
  std::fprintf(stderr, "synod-empty-server: serving KV.Put on %s\n", listen.c_str());

  // The stop signals were blocked in main before gRPC started its threads, so only this wait
  // takes them.
  base::WaitForStopSignal();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return 0;
}

}  // namespace
}  // namespace synod::bench

int main(int argc, char** argv) {
  synod::base::BlockStopSignals();
  return synod::bench::Main(argc, argv);
}
