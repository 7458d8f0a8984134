// The temporaries of writers in progress (AtomicFile's PATH.tmp-PID, StagedDir's DIR.tmp-PID):
// registered while they exist, so a signal that ends the process removes them first, and found by
// the next writer of the same output when their writer died without a chance to (kill -9).
#pragma once
#include <string>

namespace lofi::io {

// PATH (a file, or with DIRECTORY a directory of files) is a temporary until unregistered.
void register_temporary(const std::string& path, bool directory);
void unregister_temporary(const std::string& path);

// From now on SIGINT, SIGTERM and SIGHUP remove every registered temporary, then end the process
// as the signal would have (its exit status says which).
void remove_temporaries_on_signals();

// For a long job (train): the first SIGINT, SIGTERM or SIGHUP only asks it to stop (stop_requested()
// turns non-zero: the signal), so it can checkpoint and say where it stopped; a second one ends
// it at once as remove_temporaries_on_signals() does.
void stop_gracefully_on_signals();
int stop_requested();

// Removes each NAME.tmp-PID in DIR (with NAME given, that name's only) whose PID is no live
// process here (a writer killed before it could clean up), saying so in one line each.
void remove_dead_temporaries(const std::string& dir, const std::string& name = "");
// The same for OUTPUT's own: OUTPUT.tmp-PID beside OUTPUT.
void remove_dead_writers_temporaries(const std::string& output);

}  // namespace lofi::io
