// The rendezvous store: c10d's TCPStore, hosted on a listening socket bound here to one address
// (c10d's own server listens on every interface; its store has no authentication, so it must be
// reachable only where the job's hosts are), and joined with the wait bounded by dist.timeout_s.
#pragma once
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <string>

namespace lofi::dist {

// A TCPStore server listening on BIND:PORT only (BIND a host name or address; "0.0.0.0" or "::"
// for every interface; PORT 0: a free port the kernel picks). WHO names the setting in errors.
c10::intrusive_ptr<c10d::Store> host_store(const std::string& bind, int port, double timeout_s, const std::string& who);
// A client of the store at ADDR:PORT; waits up to TIMEOUT_S for it to come up.
c10::intrusive_ptr<c10d::Store> join_store(const std::string& addr, int port, double timeout_s);
// The port a store from host_store listens on.
int store_port(const c10::intrusive_ptr<c10d::Store>& store);

}  // namespace lofi::dist
