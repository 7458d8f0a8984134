#include "lofi/dist/store.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "lofi/error.h"

namespace lofi::dist {
namespace {

std::chrono::milliseconds to_ms(double seconds) { return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)); }

// A listening TCP socket on BIND:PORT. Hand-written because TCPStoreOptions takes no bind address,
// only a socket already listening (masterListenFd); getaddrinfo resolves names as c10d does.
int listen_on(const std::string& bind, int port, const std::string& who) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = ::getaddrinfo(bind.c_str(), service.c_str(), &hints, &found); rc != 0)
    fail(who, " = \"", bind, "\": cannot resolve the address to listen on: ", ::gai_strerror(rc));
  int error = 0;  // of the last address tried
  for (addrinfo* a = found; a; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, SOMAXCONN) == 0) {
      ::freeaddrinfo(found);
      return fd;
    }
    error = errno;
    ::close(fd);
  }
  ::freeaddrinfo(found);
  fail(who, ": cannot listen on ", bind, ":", port, ": ", error ? std::strerror(error) : "no address to bind",
       error == EADDRINUSE ? cat("; another job holds the port: choose another ",
                                 who.rfind("launch", 0) == 0 ? "--master-port (or leave it out for a free one)" : "MASTER_PORT")
                           : "");
}

}  // namespace

c10::intrusive_ptr<c10d::Store> host_store(const std::string& bind, int port, double timeout_s, const std::string& who) {
  c10d::TCPStoreOptions options;
  options.isServer = true;
  options.waitWorkers = false;  // the workers' own check-in names who is missing (dist::Comm)
  options.timeout = to_ms(timeout_s);
  const int fd = listen_on(bind, port, who);
  sockaddr_storage local{};
  socklen_t length = sizeof(local);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length);
  options.port = ntohs(local.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(local).sin6_port
                                                   : reinterpret_cast<sockaddr_in&>(local).sin_port);
  options.masterListenFd = fd;
  try {
    return c10::make_intrusive<c10d::TCPStore>(bind, options);
  } catch (const std::exception& e) {
    std::string what = e.what();
    fail(who, ": cannot host the rendezvous store on ", bind, ":", port, ": ", what.substr(0, what.find('\n')));
  }
}

c10::intrusive_ptr<c10d::Store> join_store(const std::string& addr, int port, double timeout_s) {
  // A name that does not resolve is said as such, not waited on as a store that never came up.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(addr.c_str(), nullptr, &hints, &found); rc != 0 && rc != EAI_AGAIN)  // AGAIN: the store's wait retries
    fail("rendezvous: MASTER_ADDR = \"", addr, "\" does not resolve (", ::gai_strerror(rc), "); give the host of rank 0 by a ",
         "name this machine resolves, or by its address");
  if (found) ::freeaddrinfo(found);
  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(port);
  options.isServer = false;
  options.timeout = to_ms(timeout_s);
  return c10::make_intrusive<c10d::TCPStore>(addr, options);
}

int store_port(const c10::intrusive_ptr<c10d::Store>& store) { return static_cast<c10d::TCPStore&>(*store).getPort(); }

}  // namespace lofi::dist
