//! `ghrunner-vm image build|list`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::{Args, Subcommand};

use super::GlobalArgs;
use crate::config::Settings;
use crate::exit::ExitStatus;
use crate::image::list::ListedImage;
use crate::image::{BuildOptions, Progress, ProgressKind, Recipe};

/// Build and list runner images.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build an image directory from a recipe in runner-images/ (`tiny` or `debian`).
    Build(ImageBuildArgs),
    /// List the images installed in the runner directory and the ones registered to labels.
    List(ImageListArgs),
}

/// Arguments of `image build`.
#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    /// Recipe name (`tiny`, `debian`) or path to a recipe directory.
    pub recipe: String,
    /// Output image directory [default: <runner dir>/images/<recipe>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Arguments of `image list`.
#[derive(Debug, Args)]
pub struct ImageListArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `image`.
pub async fn run(cmd: ImageCommand, global: &GlobalArgs) -> anyhow::Result<ExitStatus> {
    match cmd {
        ImageCommand::Build(args) => build(args, global).await,
        ImageCommand::List(args) => list(args, global),
    }
}

async fn build(args: ImageBuildArgs, global: &GlobalArgs) -> anyhow::Result<ExitStatus> {
    let recipe = Recipe::resolve(&args.recipe)?;
    let out = match args.out {
        Some(out) => out,
        None => global.runner_dir()?.join("images").join(&recipe.name),
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let opts = BuildOptions {
        out,
        env: Vec::new(),
        cancel: Some(cancel.clone()),
    };
    // Ctrl-C stops the recipe and removes the partial image instead of killing us mid-way.
    let on_interrupt = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.store(true, Ordering::Relaxed);
        }
    });
    let result = tokio::task::spawn_blocking(move || {
        crate::image::build(&recipe, &opts, &mut print_progress)
    })
    .await
    .context("the image build thread failed")?;
    on_interrupt.abort();
    let image = result?;
    print_out(&format!(
        "image {} ready in {} (kernel {}, user {}, shell {})\n",
        image.manifest.name,
        image.dir.display(),
        image.manifest.kernel.as_deref().unwrap_or("-"),
        image.manifest.user,
        image.manifest.shell
    ))?;
    Ok(ExitStatus::Success)
}

/// `[  12.3s] ==> step`, `[  12.3s]     detail`; stderr lines of the recipe go to stderr.
/// Output errors (a closed pipe) are ignored: the build goes on and reports its outcome.
fn print_progress(p: &Progress) {
    let stamp = format!("[{:>6.1}s]", p.elapsed.as_secs_f64());
    let _ = match p.kind {
        ProgressKind::Step => writeln!(std::io::stdout(), "{stamp} ==> {}", p.text),
        ProgressKind::Detail => writeln!(std::io::stdout(), "{stamp} {}", p.text),
        ProgressKind::Stderr => writeln!(std::io::stderr(), "{stamp} {}", p.text),
    };
    let _ = std::io::stdout().flush();
}

/// Writes `text` to stdout; a reader that went away (`| head`) is not an error.
fn print_out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn list(args: ImageListArgs, global: &GlobalArgs) -> anyhow::Result<ExitStatus> {
    let runner_dir = global.runner_dir()?;
    let labels = labelled_images(&runner_dir)?;
    let listed = crate::image::list::list(&runner_dir.join("images"), &labels);
    if args.json {
        print_out(&format!("{}\n", serde_json::to_string_pretty(&listed)?))?;
    } else if listed.is_empty() {
        print_out(&format!(
            "no images in {} and none registered to labels; build one with \
             `ghrunner-vm image build tiny`\n",
            runner_dir.join("images").display()
        ))?;
    } else {
        print_out(&render_table(&listed))?;
    }
    Ok(ExitStatus::Success)
}

/// The `images:` map (label → image directory) of `<runner dir>/config.yaml`; relative
/// directories are resolved against the runner directory. No file: no labels.
fn labelled_images(runner_dir: &Path) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let settings = Settings::load(runner_dir)?;
    Ok(settings
        .images
        .into_iter()
        .map(|(label, dir)| (label, runner_dir.join(dir)))
        .collect())
}

/// Columns NAME, LABELS, USER, SHELL, BUILT, DIR; an unusable image gets its error on the
/// next line.
fn render_table(listed: &[ListedImage]) -> String {
    let rows: Vec<[String; 6]> = listed
        .iter()
        .map(|l| {
            let labels = if l.labels.is_empty() {
                "-".to_string()
            } else {
                l.labels.join(",")
            };
            let dir = l.dir.display().to_string();
            match &l.manifest {
                Some(m) => [
                    m.name.clone(),
                    labels,
                    m.user.clone(),
                    m.shell.clone(),
                    m.built_at.clone().unwrap_or_else(|| "-".into()),
                    dir,
                ],
                None => [
                    "(unusable)".into(),
                    labels,
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    dir,
                ],
            }
        })
        .collect();
    let header = ["NAME", "LABELS", "USER", "SHELL", "BUILT", "DIR"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |row: &[String; 6]| {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        format!("{}\n", cells.join("  ").trim_end())
    };
    let mut out = line(&header);
    for (row, listed) in rows.iter().zip(listed) {
        out.push_str(&line(row));
        if let Some(error) = &listed.error {
            out.push_str(&format!("    error: {error}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_images_resolve_relative_dirs_and_tolerate_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.yaml"),
            "images:\n  tiny: images/tiny\n  big: /srv/debian\nvm: {cpus: 2}\n",
        )
        .unwrap();
        let labels = labelled_images(dir.path()).unwrap();
        assert_eq!(labels["tiny"], dir.path().join("images/tiny"));
        assert_eq!(labels["big"], PathBuf::from("/srv/debian"));
        let empty = tempfile::tempdir().unwrap();
        assert!(labelled_images(empty.path()).unwrap().is_empty());
    }

    #[test]
    fn table_shows_unusable_images_with_their_error() {
        let listed = vec![ListedImage {
            dir: "/x".into(),
            labels: vec!["a".into(), "b".into()],
            manifest: None,
            error: Some("reading /x/manifest.json failed".into()),
        }];
        let table = render_table(&listed);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{table}");
        assert!(lines[1].starts_with("(unusable)"), "{table}");
        // Columns line up: each cell starts where its header does.
        for (header, cell) in [("LABELS", "a,b"), ("DIR", "/x")] {
            assert_eq!(lines[0].find(header), lines[1].find(cell), "{table}");
        }
        assert_eq!(lines[2], "    error: reading /x/manifest.json failed");
    }
}
