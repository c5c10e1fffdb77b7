#pragma once
// How ranks talk: non-blocking point-to-point messages plus the few collectives needed at
// start-up and at the end. MpiTransport implements it over MPI; LocalTransport is the
// one-rank case (a plain `chorus run` without mpirun), where every hand-off is local.
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace chorus::runtime {

class Transport {
 public:
  using Request = int;
  virtual ~Transport() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string host() const = 0;
  // Starts sending / receiving `bytes` bytes; the buffer must stay alive until the request ends.
  virtual Request isend(int dest, int tag, const void* data, std::size_t bytes) = 0;
  virtual Request irecv(int source, int tag, void* data, std::size_t capacity) = 0;
  // Waits for a request; for receives, returns the bytes that arrived. With timeout_s > 0,
  // throws chorus::Error when the request has not ended by then (a stalled or dead peer).
  virtual std::size_t wait(Request request, double timeout_s = 0) = 0;
  // True when the request has ended (it is then released).
  virtual bool test(Request request) = 0;
  // True when the request has ended; it stays for wait(), which then returns at once.
  virtual bool ready(Request request) = 0;
  // Start-up and end only (never in the steady state).
  virtual int max_all(int value) = 0;
  virtual std::vector<std::string> gather_strings(const std::string& mine, int root) = 0;
  virtual std::vector<std::string> all_gather_strings(const std::string& mine) = 0;
  virtual double time() const = 0;  // seconds: the wall clock on MPI (one clock on a host)
  // Ends every rank of the job with this exit code.
  [[noreturn]] virtual void abort(int code) = 0;
};

// MPI when the process was started by mpirun/mpiexec (Open MPI or PMI environment), else a
// LocalTransport. Owns MPI_Init/MPI_Finalize.
std::unique_ptr<Transport> make_transport(int* argc, char*** argv);

// True when this process was launched by an MPI launcher.
bool launched_by_mpi();

}  // namespace chorus::runtime
