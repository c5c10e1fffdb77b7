#pragma once
// Last words for a rank that mpirun ends because a peer died: what this rank is and whom it
// was waiting for, kept ready so a signal handler can write it. mpirun names the dead rank
// and its host; the survivors' notices name the stage it held and the frame it owed.
#include <string>

namespace chorus::runtime {

// Installs handlers for SIGTERM and SIGINT (mpirun sends them to the survivors of a failed
// job) that print "[<who>] ended by mpirun ...; it was waiting for <what>" and exit.
void install_failure_notice(const std::string& who);
void note_waiting(const char* what);  // "rank 1 on pi2, stage 1 (fc1..fc1), frame 812"
void note_not_waiting();
// Back to the default handlers: this rank is ending the job itself and has said why.
void silence_failure_notice();

}  // namespace chorus::runtime
