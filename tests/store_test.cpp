// The rendezvous store listens where it is told, not on every interface (c10d's default).
#include "lofi/dist/store.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "test_util.h"

namespace lofi::dist {
namespace {

// The local addresses (hex, as /proc/net/tcp{,6} write them) of sockets listening on PORT.
std::vector<std::string> listening_addresses(int port) {
  std::vector<std::string> found;
  char hex_port[8];
  std::snprintf(hex_port, sizeof(hex_port), "%04X", port);
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state;
      fields >> slot >> local >> remote >> state;
      const auto colon = local.find(':');
      if (state == "0A" && local.substr(colon + 1) == hex_port) found.push_back(local.substr(0, colon));
    }
  }
  return found;
}

TEST(Store, ListensOnTheGivenAddressOnly) {
  auto loopback = host_store("127.0.0.1", 0, 10, "test");
  EXPECT_EQ(listening_addresses(store_port(loopback)), std::vector<std::string>{"0100007F"});  // 127.0.0.1
  auto everywhere = host_store("0.0.0.0", 0, 10, "dist.bind");
  EXPECT_EQ(listening_addresses(store_port(everywhere)), std::vector<std::string>{"00000000"});
  // A client reaches it, and the data goes through.
  auto client = join_store("127.0.0.1", store_port(loopback), 10);
  client->set("k", std::vector<uint8_t>{7});
  EXPECT_EQ(loopback->get("k"), std::vector<uint8_t>{7});
}

TEST(Store, BadAddressesAreOneLine) {
  EXPECT_NE(test::error_of([] { host_store("no-such-host.invalid", 0, 10, "dist.bind"); }).find("dist.bind = \"no-such-host.invalid\": cannot resolve"),
            std::string::npos);
  auto taken = host_store("127.0.0.1", 0, 10, "test");
  const std::string busy = test::error_of([&] { host_store("127.0.0.1", store_port(taken), 10, "rank 0 (MASTER_ADDR)"); });
  EXPECT_NE(busy.find("Address already in use; another job holds the port: choose another MASTER_PORT"), std::string::npos) << busy;
}

}  // namespace
}  // namespace lofi::dist
