#include "lofi/eval/projection.h"

namespace lofi::eval {

const std::vector<Link>& projection_links() {
  static const std::vector<Link> links{{"100 Mbit/s", 100e6}, {"1 Gbit/s", 1e9}, {"10 Gbit/s", 10e9}};
  return links;
}

double projected_seconds(double measured_seconds, double bytes_per_worker_between_machines, const Link& link) {
  return measured_seconds + 8.0 * bytes_per_worker_between_machines / link.bits_per_s;
}

}  // namespace lofi::eval
