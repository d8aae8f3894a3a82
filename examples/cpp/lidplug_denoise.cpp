// lidplug_denoise: runs a denoiser exported by lidplug.export (TorchScript .pt) on CT slices,
// with libtorch alone (no Python).
//
//   lidplug_denoise MODEL INPUT OUTPUT [--shape HxW|BxHxW|BxCxHxW] [--units hu|window]
//                   [--device cpu|cuda]
//
// INPUT is a .npy file (float32, little-endian, C order; shape (H, W), (B, H, W) or (B, C, H, W))
// or raw float32 values in C order (anything not ending in .npy; --shape is then required).
// OUTPUT is written in the input's format and shape. --units hu (the default) takes and writes
// Hounsfield units through the model's own window (its denoise_hu method); --units window passes
// values straight to forward (the normalised units the denoiser was trained in).
//
// The program links lidplug_ops, so models whose graph calls torch.ops.lidplug.* load as well.
// Bad input (missing or foreign model, wrong file size, wrong dtype) ends with a message on stderr
// and exit status 1; bad arguments with status 2.
#include <torch/cuda.h>
#include <torch/script.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr const char* kUsage =
    "usage: lidplug_denoise MODEL INPUT OUTPUT [--shape HxW|BxHxW|BxCxHxW] [--units hu|window]"
    " [--device cpu|cuda]\n";
constexpr const char* kNpyMagic = "\x93NUMPY";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string model, input, output, units = "hu", device = "cpu";
  std::vector<int64_t> shape;  // from --shape; empty for .npy input
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "(";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << (shape.size() == 1 ? ",)" : ")");
  return out.str();
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<int64_t> parse_shape(const std::string& text) {
  std::vector<int64_t> shape;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, 'x')) {
    size_t used = 0;
    int64_t d = 0;
    try {
      d = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || item.empty() || d <= 0)
      throw UsageError("expected --shape as positive sizes joined by 'x' (e.g. 512x512), got '" +
                       text + "'");
    shape.push_back(d);
  }
  if (shape.size() < 2 || shape.size() > 4)
    throw UsageError("expected --shape with 2 to 4 sizes (HxW, BxHxW or BxCxHxW), got '" + text + "'");
  return shape;
}

Options parse_args(int argc, char** argv) {
  Options opt;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError("expected a value after " + arg);
      return argv[++i];
    };
    if (arg == "--shape") {
      opt.shape = parse_shape(value());
    } else if (arg == "--units") {
      opt.units = value();
      if (opt.units != "hu" && opt.units != "window")
        throw UsageError("expected --units hu or window, got '" + opt.units + "'");
    } else if (arg == "--device") {
      opt.device = value();
      if (opt.device != "cpu" && opt.device != "cuda")
        throw UsageError("expected --device cpu or cuda, got '" + opt.device + "'");
    } else if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (arg.rfind("--", 0) == 0) {
      throw UsageError("unknown option " + arg);
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 3)
    throw UsageError("expected MODEL INPUT OUTPUT, got " + std::to_string(positional.size()) +
                     " positional arguments");
  opt.model = positional[0];
  opt.input = positional[1];
  opt.output = positional[2];
  return opt;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

bool host_is_little_endian() {
  const uint16_t one = 1;
  unsigned char first = 0;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

// The value of a key in a .npy header dict, e.g. 'descr': '<f4' -> "'<f4'".
std::string header_value(const std::string& header, const std::string& key, const std::string& path) {
  size_t at = header.find("'" + key + "'");
  if (at != std::string::npos) at = header.find(':', at);
  if (at == std::string::npos) throw std::runtime_error(path + ": .npy header lacks '" + key + "'");
  at = header.find_first_not_of(' ', at + 1);
  const size_t end = at == std::string::npos ? at
                     : header[at] == '(' ? header.find(')', at)
                                         : header.find_first_of(",}", at);
  if (end == std::string::npos)
    throw std::runtime_error(path + ": malformed .npy header: " + header);
  return header.substr(at, end - at + (header[at] == '(' ? 1 : 0));
}

// Parses a .npy file holding float32 little-endian C-order data; returns its shape and data.
std::vector<int64_t> read_npy(const std::string& path, std::vector<float>& data) {
  const std::string bytes = read_file(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, kNpyMagic) != 0)
    throw std::runtime_error(path + ": expected a .npy file (magic \\x93NUMPY), got other data");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0, start = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | static_cast<unsigned char>(bytes[9]) << 8;
    start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw std::runtime_error(path + ": truncated .npy header");
    for (int i = 3; i >= 0; --i) header_len = header_len << 8 | static_cast<unsigned char>(bytes[8 + i]);
    start = 12;
  } else {
    throw std::runtime_error(path + ": expected .npy format version 1, 2 or 3, got " +
                             std::to_string(major));
  }
  if (start + header_len > bytes.size()) throw std::runtime_error(path + ": truncated .npy header");
  const std::string header = bytes.substr(start, header_len);
  const std::string descr = header_value(header, "descr", path);
  if (descr != "'<f4'")
    throw std::runtime_error(path + ": expected dtype float32 little-endian ('<f4'), got " + descr);
  if (header_value(header, "fortran_order", path) != "False")
    throw std::runtime_error(path + ": expected C order, got fortran_order=True");
  std::vector<int64_t> shape;
  std::string dims = header_value(header, "shape", path);
  std::stringstream in(dims.substr(1, dims.size() - 2));
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.find_first_not_of(' ') == std::string::npos) continue;  // "(512,)" has an empty tail
    try {
      shape.push_back(std::stoll(item));
    } catch (const std::exception&) {
      throw std::runtime_error(path + ": malformed .npy shape " + dims);
    }
  }
  const size_t offset = start + header_len;
  const size_t expected = static_cast<size_t>(numel(shape)) * sizeof(float);
  if (bytes.size() - offset != expected)
    throw std::runtime_error(path + ": expected " + std::to_string(expected) +
                             " bytes of float32 data for shape " + shape_str(shape) + ", got " +
                             std::to_string(bytes.size() - offset));
  data.resize(numel(shape));
  std::memcpy(data.data(), bytes.data() + offset, expected);
  return shape;
}

void write_npy(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape_str(shape) + ", }";
  // Version 1.0: magic (6) + version (2) + length (2) + header, padded to a multiple of 64.
  header.append(63 - (10 + header.size()) % 64, ' ');
  header.push_back('\n');
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error("cannot write " + path);
  out.write(kNpyMagic, 6);
  const char version_and_len[4] = {1, 0, static_cast<char>(header.size() & 0xff),
                                   static_cast<char>(header.size() >> 8)};
  out.write(version_and_len, 4);
  out << header;
  out.write(reinterpret_cast<const char*>(data), numel(shape) * sizeof(float));
  if (!out) throw std::runtime_error("failed writing " + path);
}

std::vector<int64_t> read_raw(const std::string& path, const std::vector<int64_t>& shape,
                              std::vector<float>& data) {
  if (shape.empty())
    throw UsageError("raw input " + path + " needs --shape (e.g. --shape 512x512); or pass a .npy");
  const std::string bytes = read_file(path);
  const size_t expected = static_cast<size_t>(numel(shape)) * sizeof(float);
  if (bytes.size() != expected)
    throw std::runtime_error(path + ": expected " + std::to_string(expected) +
                             " bytes (float32, shape " + shape_str(shape) + "), got " +
                             std::to_string(bytes.size()));
  data.resize(numel(shape));
  std::memcpy(data.data(), bytes.data(), expected);
  return shape;
}

// [H, W] / [B, H, W] / [B, C, H, W] -> the model's [B, C, H, W].
std::vector<int64_t> to_bchw(const std::vector<int64_t>& shape) {
  switch (shape.size()) {
    case 2: return {1, 1, shape[0], shape[1]};
    case 3: return {shape[0], 1, shape[1], shape[2]};
    case 4: return shape;
    default:
      throw std::runtime_error("expected input of shape (H, W), (B, H, W) or (B, C, H, W), got " +
                               shape_str(shape));
  }
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// An error raised inside TorchScript comes with both tracebacks; its last line is the message.
std::string error_message(const std::exception& e) {
  std::string text = e.what();
  if (text.find("Traceback of TorchScript") == std::string::npos) return text;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text.substr(text.rfind('\n') + 1);
}

torch::jit::Module load_model(const std::string& path, const torch::Device& device) {
  if (!std::ifstream(path, std::ios::binary)) throw std::runtime_error("cannot open model " + path);
  torch::jit::ExtraFilesMap extra{{"lidplug.json", ""}};
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, device, extra);
  } catch (const c10::Error& e) {
    throw std::runtime_error("cannot load " + path + " as TorchScript (expected a .pt written by "
                             "lidplug.export; .pt2 files need torch.export's loader): " +
                             first_line(e.what_without_backtrace()));
  }
  if (extra["lidplug.json"].empty())
    throw std::runtime_error(path + " is TorchScript but not a lidplug export (no extra file "
                             "lidplug.json)");
  return module;
}

int run(const Options& opt) {
  if (!host_is_little_endian()) throw std::runtime_error("expected a little-endian host");
  if (opt.device == "cuda" && !torch::cuda::is_available())
    throw std::runtime_error("--device cuda, but libtorch finds no CUDA device");
  const torch::Device device(opt.device == "cuda" ? torch::kCUDA : torch::kCPU);
  const bool npy = ends_with(opt.input, ".npy");
  std::vector<float> data;
  const std::vector<int64_t> shape =
      npy ? read_npy(opt.input, data) : read_raw(opt.input, opt.shape, data);
  if (npy && !opt.shape.empty() && opt.shape != shape)
    throw UsageError("--shape " + shape_str(opt.shape) + " does not match the .npy's shape " +
                     shape_str(shape) + " (--shape is for raw input; .npy files carry theirs)");
  const std::vector<int64_t> bchw = to_bchw(shape);

  torch::jit::Module module = load_model(opt.model, device);
  torch::InferenceMode guard;
  torch::Tensor x = torch::from_blob(data.data(), bchw, torch::kFloat32).to(device);
  torch::jit::IValue y = opt.units == "hu" ? module.get_method("denoise_hu")({x})
                                           : module.forward({x});
  torch::Tensor out = y.toTensor().to(torch::kCPU, torch::kFloat32).contiguous();
  if (out.sizes() != x.sizes())
    throw std::runtime_error("expected the model to return shape " + shape_str(bchw) + ", got " +
                             shape_str(out.sizes().vec()));
  if (npy) {
    write_npy(opt.output, shape, out.data_ptr<float>());
  } else {
    std::ofstream file(opt.output, std::ios::binary);
    file.write(reinterpret_cast<const char*>(out.data_ptr<float>()), out.numel() * sizeof(float));
    if (!file) throw std::runtime_error("failed writing " + opt.output);
  }
  std::cout << "wrote " << opt.output << " " << shape_str(shape) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse_args(argc, argv));
  } catch (const UsageError& e) {
    std::cerr << "lidplug_denoise: " << e.what() << "\n" << kUsage;
    return 2;
  } catch (const c10::Error& e) {  // e.g. the model rejecting the input's shape
    std::cerr << "lidplug_denoise: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "lidplug_denoise: " << error_message(e) << "\n";
    return 1;
  }
}
