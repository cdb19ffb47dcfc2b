//! The `frontdesk` command; see `frontdesk --help`.

fn main() -> std::process::ExitCode {
    frontdesk::cli::main()
}
