use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = switchboard::cli::Cli::parse();
    switchboard::cli::init_logging();
    match switchboard::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
