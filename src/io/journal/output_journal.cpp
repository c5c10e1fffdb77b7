#include "io/journal/output_journal.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/data/inputs.h"
#include "io/data/npy.h"
#include "io/hdf5/hdf5_file.h"

namespace chorus::io {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json identity(const OutputRun& run, const std::string& target) {
  return {
      {"format", "chorus-journal/1"},   {"model", run.model},   {"model_file", run.model_file}, {"input", run.input},
      {"input_files", run.input_files}, {"frames", run.frames}, {"frame_dims", run.frame_dims}, {"output", target}};
}

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<std::int64_t> all_dims(const OutputRun& run, std::int64_t frames) {
  std::vector<std::int64_t> dims{frames};
  dims.insert(dims.end(), run.frame_dims.begin(), run.frame_dims.end());
  return dims;
}

}  // namespace

std::string OutputJournal::journal_path(const std::string& target) { return split_h5_target(target).first + ".journal"; }

std::vector<std::string> output_targets(const std::string& target, const std::vector<std::string>& output_names) {
  // NAME=FILE, as --input takes, would be written to a file of that whole name.
  const auto eq = target.find('=');
  if (eq != std::string::npos &&
      std::find(output_names.begin(), output_names.end(), target.substr(0, eq)) != output_names.end())
    fail("--output ", target, ": --output takes one file, not NAME=FILE; ",
         output_names.size() > 1 ? "a model of several outputs writes one file per output, FILE.NAME.npy"
                                 : "the model's one output is written to it");
  if (output_names.size() <= 1) return {target};
  const auto [file, dataset] = split_h5_target(target);
  const fs::path path(file);
  std::vector<std::string> targets;
  for (const auto& name : output_names) {
    std::string safe = name;
    for (char& c : safe)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
    fs::path p = path;
    p.replace_extension();
    targets.push_back(p.string() + "." + safe + path.extension().string() + (dataset.empty() ? "" : ":" + dataset));
  }
  return targets;
}

OutputJournal::OutputJournal(std::string target, OutputRun run, bool resume)
    : target_(std::move(target)), run_(std::move(run)) {
  const auto [file, dataset] = split_h5_target(target_);
  const std::string ext = fs::path(file).extension().string();
  const bool hdf5 = ext == ".h5" || ext == ".hdf5" || ext == ".hdf";
  if (!hdf5 && ext != ".npy") fail(target_, ": unknown output kind (use .npy or .h5)");
  data_path_ = hdf5 ? file + ".partial.npy" : file;
  journal_ = journal_path(target_);
  frame_values_ = 1;
  for (auto d : run_.frame_dims) frame_values_ *= static_cast<std::size_t>(d);
  // A run of unknown length (a video stream) writes its header again at the end, in place: the
  // first one leaves room for any frame count.
  const bool open_ended = run_.frames < 0;
  const std::string header =
      open_ended ? npy_header(all_dims(run_, 0), npy_header(all_dims(run_, std::numeric_limits<int>::max())).size())
                 : npy_header(all_dims(run_, run_.frames));
  header_bytes_ = header.size();
  const json me = identity(run_, target_);

  if (resume) {
    std::ifstream in(journal_);
    if (!in)
      fail(journal_, ": no journal, so nothing to resume (the run finished, or never started with --output ", target_,
           ")");
    std::string line;
    json theirs;
    try {
      std::getline(in, line);
      theirs = json::parse(line);
    } catch (const json::exception&) {
    }
    if (!theirs.is_object()) fail(journal_, ": the first line is not a chorus journal header");
    // A journal of a chorus before the files' signatures were recorded resumes as before; one
    // before the input was recorded without its pacing named a real-time feed's after it.
    const auto same_input = [&](const json& recorded) {
      const std::string mine = me["input"].get<std::string>();
      return recorded.is_string() && recorded.get<std::string>().rfind(mine + ", real time at ", 0) == 0 &&
             !theirs.contains("input_files");
    };
    for (const char* key : {"format", "model", "model_file", "input", "input_files", "frames", "frame_dims", "output"})
      if (theirs.value(key, json()) != me[key] &&
          !((std::string(key) == "model_file" || std::string(key) == "input_files") && !theirs.contains(key)) &&
          !(std::string(key) == "input" && same_input(theirs.value(key, json()))))
        fail(journal_, ": this journal is for another run (", key, " was ", theirs.value(key, json()).dump(), ", now ",
             me[key].dump(), "); run without --resume to start over");
    // Frames are journalled in order after their data is flushed: count the whole lines that
    // continue the sequence (a kill can leave the last line half written).
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::size_t pos = 0;
    while (pos < text.size()) {
      const auto end = text.find('\n', pos);
      if (end == std::string::npos) break;
      const std::string word = text.substr(pos, end - pos);
      if (word != std::to_string(done_)) break;
      ++done_;
      pos = end + 1;
    }
    std::error_code ec;
    const auto size = fs::file_size(data_path_, ec);
    if (ec) fail(data_path_, ": missing, so the journal's frames cannot be resumed; run without --resume");
    const auto held = size < header_bytes_ ? 0 : (size - header_bytes_) / (frame_values_ * sizeof(float));
    if (static_cast<std::size_t>(done_) > held) done_ = static_cast<int>(held);
    if (!open_ended && done_ > run_.frames) fail(journal_, ": records ", done_, " frames of a run of ", run_.frames);
    fs::resize_file(data_path_, header_bytes_ + done_ * frame_values_ * sizeof(float));
    {  // the journal again, without a half-written last line
      const std::string temp = journal_ + ".tmp";
      std::ofstream out(temp, std::ios::trunc);
      out << me.dump() << "\n";
      for (int i = 0; i < done_; ++i) out << i << "\n";
      if (!out.flush()) fail(temp, ": cannot write (disk full?)");
      out.close();
      fs::rename(temp, journal_);
    }
    data_ = std::fopen(data_path_.c_str(), "r+b");
    if (!data_) fail(data_path_, ": cannot open to continue it");
    std::fseek(data_, static_cast<long>(header_bytes_ + done_ * frame_values_ * sizeof(float)), SEEK_SET);
  } else {
    replaced_ = fs::exists(journal_);
    data_ = std::fopen(data_path_.c_str(), "wb");
    if (!data_) fail(data_path_, ": cannot write");
    if (std::fwrite(header.data(), 1, header.size(), data_) != header.size()) fail(data_path_, ": write failed");
    std::ofstream out(journal_, std::ios::trunc);
    out << me.dump() << "\n";
    if (!out.flush()) fail(journal_, ": cannot write");
  }
  log_ = std::fopen(journal_.c_str(), "ab");
  if (!log_) fail(journal_, ": cannot append");
  last_sync_ = seconds_now();
}

OutputJournal::~OutputJournal() {
  if (data_) std::fclose(data_);
  if (log_) std::fclose(log_);
}

void OutputJournal::write(int index, const float* values) {
  CHORUS_ASSERT(index == done_, "output frame ", index, " out of order (expected ", done_, ")");
  CHORUS_ASSERT(data_ && log_, "output journal already finished");
  if (std::fwrite(values, sizeof(float), frame_values_, data_) != frame_values_ || std::fflush(data_) != 0)
    fail(data_path_, ": write failed at frame ", index, " (disk full?)");
  // Only once the frame's data has left the process does the journal say it is done.
  if (std::fprintf(log_, "%d\n", index) < 0 || std::fflush(log_) != 0)
    fail(journal_, ": write failed at frame ", index, " (disk full?)");
  ++done_;
  sync(false);
}

void OutputJournal::sync(bool force) {
  // fflush survives a killed process; fsync (at most once a second) a crashed machine too.
  const double now = seconds_now();
  if (!force && now - last_sync_ < 1.0) return;
  ::fsync(::fileno(data_));
  ::fsync(::fileno(log_));
  last_sync_ = now;
}

void OutputJournal::finish() {
  CHORUS_ASSERT(run_.frames < 0 || done_ == run_.frames, "output journal finished after ", done_, " of ", run_.frames,
                " frames");
  if (run_.frames < 0) {  // now the count is known
    const std::string header = npy_header(all_dims(run_, done_), header_bytes_);
    CHORUS_ASSERT(header.size() == header_bytes_, "npy header grew");
    if (std::fseek(data_, 0, SEEK_SET) != 0 || std::fwrite(header.data(), 1, header.size(), data_) != header.size() ||
        std::fflush(data_) != 0)
      fail(data_path_, ": cannot write the header (disk full?)");
  }
  sync(true);
  std::fclose(data_);
  std::fclose(log_);
  data_ = log_ = nullptr;
  const auto [file, dataset] = split_h5_target(target_);
  if (data_path_ != file) {  // HDF5: from the staged array into the dataset
    NpyArray staged = read_npy(data_path_);
    H5File h5(file, H5File::Mode::create);
    h5.write_floats(dataset.empty() ? "/output" : dataset, staged.shape, staged.data.data());
    fs::remove(data_path_);
  }
  fs::remove(journal_);
}

std::string file_signature(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "";
  const long long ns = static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
  return cat(static_cast<long long>(st.st_size), " bytes, modified ", ns);
}

}  // namespace chorus::io
