//! Choice of the compute device from the enabled cargo features.
//!
//! One model code runs on every backend, and the features pick the one that `default_device`
//! returns: `cuda` (NVIDIA GPU) before `tch` (libtorch, CPU) before `flex` (pure-Rust CPU, the
//! default).

pub use burn::prelude::Device;

/// Returns the device of the fastest enabled backend, without autodiff.
pub fn default_device() -> Device {
    #[cfg(feature = "cuda")]
    {
        Device::cuda(0)
    }
    #[cfg(all(feature = "tch", not(feature = "cuda")))]
    {
        // burn 0.22.1 marks burn-tch deprecated in favour of its CubeCL backends; libtorch is
        // still the fastest CPU backend it offers (BENCHMARKS.md).
        #[allow(deprecated)]
        Device::libtorch()
    }
    #[cfg(all(feature = "flex", not(any(feature = "tch", feature = "cuda"))))]
    {
        Device::flex()
    }
    #[cfg(not(any(feature = "flex", feature = "tch", feature = "cuda")))]
    {
        compile_error!("enable one backend feature of allday: flex, tch or cuda")
    }
}

/// Returns a short name of the backend that `default_device` uses, for logs and reports.
pub fn backend_name() -> &'static str {
    if cfg!(feature = "cuda") {
        "cuda"
    } else if cfg!(feature = "tch") {
        "tch (libtorch CPU)"
    } else {
        "flex (CPU)"
    }
}
