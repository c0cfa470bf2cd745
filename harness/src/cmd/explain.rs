//! `harness explain CODE…`: what an efW or Windows error code means. Needs no configuration,
//! VM or network: the tables are in `suites::explain`.

use std::process::ExitCode;

use suites::explain::{self, Explanation};

/// Arguments of `harness explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Codes as they appear in test output or as you know them: `119`, `Errno(119)`, `-22`,
    /// `ENOBUFS`, `EBPF_NO_MEMORY`, `ebpf_result 12`, `1168`, `ERROR_NOT_FOUND`, `0x80070490`.
    #[arg(required = true, value_name = "CODE", allow_negative_numbers = true)]
    pub codes: Vec<String>,
}

pub fn run(json: bool, args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let answers: Vec<(&str, Result<Vec<Explanation>, explain::UnknownCode>)> = args
        .codes
        .iter()
        .map(|c| (c.as_str(), explain::explain_query(c)))
        .collect();
    if json {
        let docs: Vec<_> = answers
            .iter()
            .map(|(q, a)| match a {
                Ok(ex) => serde_json::json!({"query": q, "explanations": ex}),
                Err(e) => serde_json::json!({"query": q, "error": e.to_string()}),
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "codes": docs }))?
        );
    } else {
        for ex in answers.iter().filter_map(|(_, a)| a.as_ref().ok()) {
            for e in ex {
                println!("{}", e.text());
            }
        }
    }
    let unknown: Vec<String> = answers
        .iter()
        .filter_map(|(_, a)| a.as_ref().err().map(|e| e.to_string()))
        .collect();
    if !unknown.is_empty() {
        anyhow::bail!("{}", unknown.join("\n"));
    }
    Ok(ExitCode::SUCCESS)
}
