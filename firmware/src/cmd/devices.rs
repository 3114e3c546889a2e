//! `ingot devices`: NVMe controllers and namespaces with identify data and SMART/health,
//! as a table or JSON.

use crate::cli::DevicesArgs;
use crate::config::DriveSpec;
use crate::drives;
use crate::error::CliError;
use crate::size::human;
use crate::table::Table;
use ingot_hal::nvme::spec::SmartLog;
use serde::Serialize;

/// One namespace.
#[derive(Debug, Serialize)]
struct NamespaceReport {
    nsid: u32,
    block_size: u32,
    blocks: u64,
    capacity_bytes: u64,
}

/// One controller, or the reason it could not be opened.
#[derive(Debug, Serialize)]
struct DeviceReport {
    location: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    firmware: Option<String>,
    namespaces: Vec<NamespaceReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    smart: Option<SmartLog>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_log_entries: Option<usize>,
}

impl DeviceReport {
    fn failed(location: String, error: String) -> Self {
        DeviceReport {
            location,
            error: Some(error),
            model: None,
            serial: None,
            firmware: None,
            namespaces: Vec::new(),
            smart: None,
            error_log_entries: None,
        }
    }
}

/// The drive specs named on the command line; unreadable simulated drives become reports.
fn specs(args: &DevicesArgs) -> Result<(Vec<DriveSpec>, Vec<DeviceReport>), CliError> {
    let mut specs = Vec::new();
    let mut broken = Vec::new();
    for dir in &args.sim {
        for d in ingot_hal::sim::list_drives(dir)? {
            match d {
                Ok(d) => specs.push(DriveSpec::Sim { path: d.data_path }),
                Err(e) => broken.push(DeviceReport::failed(
                    dir.display().to_string(),
                    e.to_string(),
                )),
            }
        }
    }
    for v in &args.vfio {
        if v == "all" {
            for pci in crate::vfio::nvme_functions()? {
                specs.push(DriveSpec::Vfio { pci, nsid: 1 });
            }
        } else {
            specs.push(DriveSpec::Vfio {
                pci: v.clone(),
                nsid: 1,
            });
        }
    }
    Ok((specs, broken))
}

fn location(spec: &DriveSpec) -> String {
    match spec {
        DriveSpec::Sim { path } | DriveSpec::File { path } => path.display().to_string(),
        DriveSpec::Vfio { pci, .. } => pci.clone(),
    }
}

async fn report(spec: &DriveSpec) -> DeviceReport {
    let drive = match drives::open(spec).await {
        Ok(d) => d,
        Err(e) => return DeviceReport::failed(location(spec), e.to_string()),
    };
    let Some(ctrl) = drive.controller.clone() else {
        return DeviceReport::failed(location(spec), "not an NVMe device".into());
    };
    let id = ctrl.identify().clone();
    let smart = ctrl.smart_log().await;
    let errors = ctrl.error_log().await;
    let namespaces = ctrl
        .namespaces()
        .into_iter()
        .map(|n| NamespaceReport {
            nsid: n.nsid,
            block_size: n.block_size,
            blocks: n.blocks,
            capacity_bytes: n.blocks * u64::from(n.block_size),
        })
        .collect();
    let mut r = DeviceReport {
        location: ctrl.id().to_string(),
        error: None,
        model: Some(id.model),
        serial: Some(id.serial),
        firmware: Some(id.firmware),
        namespaces,
        smart: None,
        error_log_entries: None,
    };
    match smart {
        Ok(s) => r.smart = Some(s),
        Err(e) => r.error = Some(format!("SMART log: {e}")),
    }
    match errors {
        Ok(e) => r.error_log_entries = Some(e.len()),
        Err(e) => r.error = Some(format!("error log: {e}")),
    }
    if let Err(e) = drive.close().await {
        tracing::warn!(device = %r.location, error = %e, "shutdown failed");
    }
    r
}

fn render(reports: &[DeviceReport]) -> String {
    let mut t = Table::new([
        "DEVICE",
        "MODEL",
        "SERIAL",
        "FW",
        "NS",
        "CAPACITY",
        "LBA",
        "TEMP",
        "USED",
        "MEDIA-ERR",
        "READ",
        "WRITTEN",
        "POWER-ON",
    ]);
    let mut problems = Vec::new();
    for r in reports {
        if let Some(e) = &r.error {
            problems.push(format!("{}: {e}", r.location));
        }
        if r.model.is_none() {
            continue;
        }
        let s = r.smart.clone().unwrap_or_default();
        let ns: Vec<&NamespaceReport> = r.namespaces.iter().collect();
        let first = ns.first();
        t.row([
            r.location.clone(),
            r.model.clone().unwrap_or_default(),
            r.serial.clone().unwrap_or_default(),
            r.firmware.clone().unwrap_or_default(),
            ns.iter()
                .map(|n| n.nsid.to_string())
                .collect::<Vec<_>>()
                .join(","),
            first.map_or(String::new(), |n| human(n.capacity_bytes)),
            first.map_or(String::new(), |n| n.block_size.to_string()),
            if r.smart.is_some() {
                format!("{} C", i32::from(s.temperature_kelvin) - 273)
            } else {
                "-".into()
            },
            format!("{}%", s.percentage_used),
            s.media_errors.to_string(),
            human(s.data_read_bytes()),
            human(s.data_written_bytes()),
            format!("{} h", s.power_on_hours),
        ]);
    }
    let mut out = t.render();
    for p in problems {
        out.push_str(&format!("warning: {p}\n"));
    }
    out
}

/// Run `ingot devices`.
pub async fn run(args: &DevicesArgs) -> Result<(), CliError> {
    let default_dir = std::path::Path::new(crate::DEFAULT_DATA_DIR).join("drives");
    let mut args = DevicesArgs {
        sim: args.sim.clone(),
        vfio: args.vfio.clone(),
        json: args.json,
    };
    if args.sim.is_empty() && args.vfio.is_empty() {
        // Never bind host NVMe functions to vfio-pci unasked: that could take the boot disk.
        if !default_dir.is_dir() {
            return Err(CliError::Usage(format!(
                "no drives named and no {} here: use --sim DIR (simulated drives) and/or \
                 --vfio PCI|all (real NVMe through VFIO)",
                default_dir.display()
            )));
        }
        args.sim.push(default_dir);
    }
    let (specs, mut reports) = specs(&args)?;
    for s in &specs {
        reports.push(report(s).await);
    }
    if args.json {
        let text = serde_json::to_string_pretty(&reports)
            .map_err(|e| CliError::Usage(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
    } else if reports.is_empty() {
        println!("no devices found");
    } else {
        print!("{}", render(&reports));
    }
    Ok(())
}
