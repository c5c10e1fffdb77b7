// Outputs written frame by frame with a journal, and resumed after a kill.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/data/npy.h"
#include "io/hdf5/hdf5_file.h"
#include "io/journal/output_journal.h"
#include "reference/test_util.h"

namespace chorus {
namespace {

using testing::HasSubstr;

io::OutputRun run_of(int frames) { return {"lenet.h5", "synthetic (seed 1)", frames, {2, 3}, "", ""}; }

std::vector<float> frame_values(int i) {
  std::vector<float> v(6);
  for (int k = 0; k < 6; ++k) v[k] = static_cast<float>(i * 10 + k);
  return v;
}

using test::error_of;

TEST(OutputJournal, FreshRunWritesEveryFrameThenRemovesTheJournal) {
  test::TempDir dir;
  const std::string out = dir.path("out.npy");
  {
    io::OutputJournal j(out, run_of(4), false);
    EXPECT_EQ(j.frames_done(), 0);
    for (int i = 0; i < 4; ++i) j.write(i, frame_values(i).data());
    EXPECT_TRUE(std::filesystem::exists(out + ".journal"));
    j.finish();
  }
  EXPECT_FALSE(std::filesystem::exists(out + ".journal"));
  io::NpyArray a = io::read_npy(out);
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{4, 2, 3}));
  for (int i = 0; i < 4; ++i)
    for (int k = 0; k < 6; ++k) EXPECT_EQ(a.data[i * 6 + k], frame_values(i)[k]);
}

TEST(OutputJournal, ResumeContinuesAfterTheLastWholeJournalLine) {
  test::TempDir dir;
  const std::string out = dir.path("out.npy");
  {
    io::OutputJournal j(out, run_of(5), false);
    for (int i = 0; i < 3; ++i) j.write(i, frame_values(i).data());
  }  // "killed": no finish
  {  // a kill mid-line leaves half a journal line and stray data bytes
    std::ofstream(out + ".journal", std::ios::app) << "3";
    std::ofstream(out, std::ios::app | std::ios::binary) << "xy";
  }
  io::OutputJournal j(out, run_of(5), true);
  EXPECT_EQ(j.frames_done(), 3);
  for (int i = 3; i < 5; ++i) j.write(i, frame_values(i).data());
  j.finish();
  io::NpyArray a = io::read_npy(out);
  ASSERT_EQ(a.data.size(), 30u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(a.data[i * 6], frame_values(i)[0]);
}

TEST(OutputJournal, ResumeRefusesAnotherRunOrNoJournal) {
  test::TempDir dir;
  const std::string out = dir.path("out.npy");
  {
    io::OutputJournal j(out, run_of(5), false);
    j.write(0, frame_values(0).data());
  }
  io::OutputRun other = run_of(5);
  other.input = "synthetic (seed 2)";
  EXPECT_THAT(error_of([&] { io::OutputJournal(out, other, true); }),
              HasSubstr("out.npy.journal: this journal is for another run (input was \"synthetic (seed 1)\", now "
                        "\"synthetic (seed 2)\")"));
  EXPECT_THAT(error_of([&] { io::OutputJournal(out, run_of(6), true); }), HasSubstr("(frames was 5, now 6)"));
  // The same path, another file: a model replaced between the kill and the resume.
  io::OutputRun replaced = run_of(5);
  replaced.model_file = io::file_signature(out);
  EXPECT_THAT(error_of([&] { io::OutputJournal(out, replaced, true); }), HasSubstr("(model_file was \"\", now"));
  EXPECT_THAT(error_of([&] { io::OutputJournal(dir.path("none.npy"), run_of(5), true); }),
              HasSubstr("none.npy.journal: no journal, so nothing to resume"));
  std::ofstream(dir.path("bad.npy.journal")) << "not json\n";
  EXPECT_THAT(error_of([&] { io::OutputJournal(dir.path("bad.npy"), run_of(5), true); }),
              HasSubstr("bad.npy.journal: the first line is not a chorus journal header"));
  EXPECT_THAT(error_of([&] { io::OutputJournal(dir.path("out.csv"), run_of(5), false); }),
              HasSubstr("out.csv: unknown output kind"));
}

TEST(OutputJournal, AFreshRunReplacesAnUnfinishedOneAndSaysSo) {
  test::TempDir dir;
  const std::string out = dir.path("out.npy");
  { io::OutputJournal(out, run_of(2), false).write(0, frame_values(0).data()); }
  io::OutputJournal j(out, run_of(2), false);
  EXPECT_TRUE(j.replaced_unfinished_run());
  EXPECT_EQ(j.frames_done(), 0);
}

TEST(OutputJournal, Hdf5TargetIsStagedThenWritten) {
  test::TempDir dir;
  const std::string file = dir.path("out.h5");
  {
    io::OutputJournal j(file + ":/probs", run_of(3), false);
    for (int i = 0; i < 2; ++i) j.write(i, frame_values(i).data());
  }
  io::OutputJournal j(file + ":/probs", run_of(3), true);
  EXPECT_EQ(j.frames_done(), 2);
  j.write(2, frame_values(2).data());
  j.finish();
  EXPECT_FALSE(std::filesystem::exists(file + ".partial.npy"));
  io::H5File h5(file);
  EXPECT_EQ(h5.dataset_shape("/probs"), (std::vector<std::int64_t>{3, 2, 3}));
  EXPECT_EQ(h5.read_floats("/probs", 100)[12], frame_values(2)[0]);
}

}  // namespace
}  // namespace chorus
