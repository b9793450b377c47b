//! The `eventsift` binary; see [`eventsift::cli`].

fn main() -> std::process::ExitCode {
    eventsift::cli::main()
}
