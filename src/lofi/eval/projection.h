#pragma once
// What a run's time would be across machines, from what it measured on one: every worker on a
// machine of its own, each sending its bytes between machines over a link of LINK bits per second
// while nothing else waits on the wire. A projection from measured numbers, labelled as one:
//   projected = measured seconds + 8 x bytes per worker between machines / link bits per second
// (the baseline's all-reduce crosses machines; a run of several nodes sends only its between-node
// traffic across; lo-fi sends nothing).
#include <string>
#include <vector>

namespace lofi::eval {

struct Link {
  std::string name;     // "100 Mbit/s"
  double bits_per_s;
};
// 100 Mbit/s, 1 Gbit/s, 10 Gbit/s.
const std::vector<Link>& projection_links();

double projected_seconds(double measured_seconds, double bytes_per_worker_between_machines, const Link& link);

}  // namespace lofi::eval
