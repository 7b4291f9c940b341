//! `cargo run --example gen-assets -- DIR`: writes the man page and the shell completions, generated from
//! the clap definition itself, into DIR (man/imds-hop-limit.1, completions/{bash,zsh,fish}).

#[allow(dead_code)]
#[path = "../src/cli.rs"]
mod cli;
#[allow(dead_code)]
#[path = "../src/duration.rs"]
mod duration;
#[allow(dead_code)]
#[path = "../src/ids.rs"]
mod ids;
#[allow(dead_code)]
#[path = "../src/plan.rs"]
mod plan;

use clap::CommandFactory;
use clap_complete::Shell;
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "dist/assets".into()));
    let mut cmd = cli::Cli::command();
    std::fs::create_dir_all(dir.join("man"))?;
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    std::fs::write(dir.join("man/imds-hop-limit.1"), page)?;
    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "imds-hop-limit", &completions)?;
    }
    Ok(())
}
