//! The `eventsift` binary; see [`eventsift::cli`].

/// mimalloc: the API's request path allocates and frees across threads
/// (hyper, the Kafka delivery thread); glibc's malloc was a tenth of its CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    eventsift::cli::main()
}
