//! The `rfidgw` command line: a thin layer over the library.

fn main() -> std::process::ExitCode {
    rfidgw::cli::main()
}
