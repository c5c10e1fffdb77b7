#pragma once
// The FFmpeg functions that video input calls, loaded with dlopen the first time a video, a
// stream or a camera is opened. Linked in, Debian's FFmpeg brings some 200 libraries with it
// (codecs, filters, SDL, PulseAudio...) and every process paid for them at start-up: 58 MB of
// resident memory for `chorus --help`, 47 MB of it FFmpeg's, on every rank of a Pi cluster
// where only the source rank ever reads a video. libavdevice (cameras), the heaviest part, is
// loaded only for a camera.
//
// Only video.cpp includes this; the sonames come from the headers it was compiled against.
#ifdef CHORUS_HAVE_VIDEO

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavdevice/avdevice.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
#include <libswscale/swscale.h>
}

namespace chorus::io {

// X(library, function) for every function used, by the library that exports it.
#define CHORUS_FFMPEG_FUNCTIONS(X)          \
  X(avutil, av_log_format_line2)            \
  X(avutil, av_log_set_callback)            \
  X(avutil, av_strerror)                    \
  X(avutil, av_malloc)                      \
  X(avutil, av_free)                        \
  X(avutil, av_freep)                       \
  X(avutil, av_dict_set)                    \
  X(avutil, av_dict_free)                   \
  X(avutil, av_frame_alloc)                 \
  X(avutil, av_frame_unref)                 \
  X(avutil, av_frame_free)                  \
  X(avutil, av_get_pix_fmt_name)            \
  X(swscale, sws_getCachedContext)          \
  X(swscale, sws_scale)                     \
  X(swscale, sws_freeContext)               \
  X(avcodec, avcodec_get_name)              \
  X(avcodec, avcodec_alloc_context3)        \
  X(avcodec, avcodec_parameters_to_context) \
  X(avcodec, avcodec_open2)                 \
  X(avcodec, avcodec_send_packet)           \
  X(avcodec, avcodec_receive_frame)         \
  X(avcodec, avcodec_free_context)          \
  X(avcodec, av_packet_alloc)               \
  X(avcodec, av_packet_unref)               \
  X(avcodec, av_packet_free)                \
  X(avformat, avformat_network_init)        \
  X(avformat, avformat_alloc_context)       \
  X(avformat, avformat_open_input)          \
  X(avformat, avformat_find_stream_info)    \
  X(avformat, avformat_close_input)         \
  X(avformat, av_find_input_format)         \
  X(avformat, av_find_best_stream)          \
  X(avformat, av_guess_frame_rate)          \
  X(avformat, av_read_frame)                \
  X(avformat, av_seek_frame)                \
  X(avformat, avio_alloc_context)           \
  X(avformat, avio_context_free)

struct FfmpegLibrary {
#define CHORUS_FFMPEG_POINTER(library, function) decltype(&::function) function = nullptr;
  CHORUS_FFMPEG_FUNCTIONS(CHORUS_FFMPEG_POINTER)
#undef CHORUS_FFMPEG_POINTER
};

// The functions, loaded on the first call (thread-safe). Throws chorus::Error naming the
// library and its Debian package where one cannot be loaded.
const FfmpegLibrary& ffmpeg();

// Loads libavdevice and registers its inputs (V4L2 cameras) with libavformat, once.
void register_ffmpeg_devices();

}  // namespace chorus::io

#endif  // CHORUS_HAVE_VIDEO
