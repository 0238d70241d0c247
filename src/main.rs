use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Before the runtime's threads exist: see `parley::malloc`.
    parley::malloc::bound();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let cli = parley::cli::Cli::parse();
    match runtime.block_on(parley::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
