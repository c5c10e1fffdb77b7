#pragma once
// Stopping a run at a frame boundary. On SIGUSR1 (which mpirun passes on to every rank) the
// source reads no further frame; the frames already in flight finish, the outputs so far stay
// written with their journal, and every rank exits with kStoppedExitCode, so that `--resume`
// goes on from there. `chorus supervise` stops a job this way to re-plan when a device is back.
#include "core/error.h"  // kStoppedExitCode

namespace chorus::runtime {

// main installs it first thing, before MPI_Init, so that a SIGUSR1 never ends a rank with the
// default action.
void install_stop_request_handler();
bool stop_requested();

}  // namespace chorus::runtime
