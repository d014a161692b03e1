//! `tempora completions SHELL` and `tempora man`: shell completions and manual pages generated
//! from the command-line definition itself (clap's own generators), so they cannot drift.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, ValueEnum};

/// Shells `tempora completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// Bash (`source <(tempora completions bash)`, or a file in
    /// `/usr/share/bash-completion/completions/tempora`).
    Bash,
    /// Zsh (a file `_tempora` on `$fpath`).
    Zsh,
    /// Fish (`~/.config/fish/completions/tempora.fish`).
    Fish,
}

/// Flags of `tempora man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `tempora.1` and one page per command (`tempora-job.1`, `tempora-job-backfill.1`, …)
    /// into this directory instead of printing `tempora(1)`.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Print the completion script of `shell`.
pub fn completions<C: CommandFactory>(shell: Shell) -> ExitCode {
    let mut cmd = C::command();
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    // Generated into memory first: clap_complete panics when its writer fails (a full disk,
    // a closed pipe); the write here fails with a message instead.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "tempora", &mut script);
    let mut out = std::io::stdout();
    match out.write_all(&script).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the completion script: {e}");
            ExitCode::from(2)
        }
    }
}

/// Print `tempora(1)`, or write every page into `--dir`.
pub fn man<C: CommandFactory>(args: ManArgs) -> ExitCode {
    let cmd = C::command().name("tempora");
    let result = match &args.dir {
        None => {
            let mut out = std::io::stdout();
            clap_mangen::Man::new(cmd).render(&mut out)
        }
        Some(dir) => write_pages(cmd, dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match &args.dir {
                Some(dir) => eprintln!(
                    "error: cannot write the manual pages into {}: {e}",
                    dir.display()
                ),
                None => eprintln!("error: cannot write the manual page: {e}"),
            }
            ExitCode::from(2)
        }
    }
}

/// `tempora.1`, and `tempora-<command>[-<sub>].1` for every command, recursively.
fn write_pages(cmd: clap::Command, dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut todo = vec![(cmd.get_name().to_owned(), cmd)];
    while let Some((name, cmd)) = todo.pop() {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let sub_name = format!("{name}-{}", sub.get_name());
            // clap (without its `string` feature) names commands with static strings; these
            // few live until the process exits right after writing the pages.
            let page_name: &'static str = Box::leak(sub_name.clone().into_boxed_str());
            todo.push((sub_name, sub.clone().name(page_name)));
        }
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut page)?;
        std::fs::write(dir.join(format!("{name}.1")), page)?;
    }
    Ok(())
}
