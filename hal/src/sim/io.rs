//! NVM command set of the simulated controller: Read, Write (FUA), Flush,
//! Write Zeroes and Dataset Management (deallocate), on namespace 1.

use super::admin::NSID;
use super::engine::{Done, Engine, Status};
use crate::nvme::spec::{Command, DsmRange, io, sc, sct};

impl Engine {
    /// Run one I/O command.
    pub(super) fn io(&mut self, cmd: &Command) -> Done {
        match cmd.opcode() {
            io::FLUSH => {
                if cmd.nsid != NSID && cmd.nsid != 0xffff_ffff {
                    return Status::invalid(sc::INVALID_NAMESPACE).into();
                }
                self.flush_store()
            }
            io::READ => self.read(cmd),
            io::WRITE => self.write(cmd),
            io::WRITE_ZEROES => self.write_zeroes(cmd),
            io::DATASET_MANAGEMENT => self.dsm(cmd),
            _ => Status::invalid(sc::INVALID_OPCODE).into(),
        }
    }

    fn flush_store(&self) -> Done {
        match self.sh.store.flush() {
            Ok(()) => Done::ok(0),
            Err(e) => {
                tracing::error!(device = %self.sh.id, error = %e, "sim: flush failed");
                Status::transient(sc::INTERNAL_ERROR).into()
            }
        }
    }

    /// Check namespace and range; the byte offset and length of `slba`/`nlb`.
    fn blocks(&self, cmd: &Command, slba: u64, nlb: u64) -> Result<(u64, u64), Done> {
        if cmd.nsid != NSID {
            return Err(Status::invalid(sc::INVALID_NAMESPACE).into());
        }
        let bs = u64::from(self.sh.cfg.lba_size);
        match slba.checked_add(nlb) {
            Some(end) if end <= self.sh.cfg.blocks() => Ok((slba * bs, nlb * bs)),
            _ => Err(Done {
                dw0: 0,
                status: Status::invalid(sc::LBA_OUT_OF_RANGE),
                lba: slba,
            }),
        }
    }

    fn media(&self, sc_v: u8, lba: u64, what: &str, e: &std::io::Error) -> Done {
        tracing::error!(device = %self.sh.id, lba, error = %e, "sim: backing store {what} failed");
        Done {
            dw0: 0,
            status: Status {
                sct: sct::MEDIA,
                sc: sc_v,
                dnr: false,
            },
            lba,
        }
    }

    fn read(&mut self, cmd: &Command) -> Done {
        let slba = cmd.slba();
        let (off, len) = match self.blocks(cmd, slba, u64::from(cmd.nlb())) {
            Ok(r) => r,
            Err(d) => return d,
        };
        if len > self.sh.cfg.max_transfer() {
            return Status::invalid(sc::INVALID_FIELD).into();
        }
        // Straight from the store into host memory: no intermediate buffer.
        let dst = match self.dma_spans(cmd, len as usize, true) {
            Ok(d) => d,
            Err(s) => {
                return Done {
                    dw0: 0,
                    status: s,
                    lba: slba,
                };
            }
        };
        let read = self.sh.store.read_into(off, &dst);
        drop(dst);
        if let Err(e) = read {
            return self.media(sc::MEDIA_UNRECOVERED_READ, slba, "read", &e);
        }
        self.sh.health.read_done(len);
        Done::ok(0)
    }

    fn write(&mut self, cmd: &Command) -> Done {
        let slba = cmd.slba();
        let (off, len) = match self.blocks(cmd, slba, u64::from(cmd.nlb())) {
            Ok(r) => r,
            Err(d) => return d,
        };
        if len > self.sh.cfg.max_transfer() {
            return Status::invalid(sc::INVALID_FIELD).into();
        }
        // Straight from host memory into the store: no intermediate buffer.
        let src = match self.dma_spans(cmd, len as usize, false) {
            Ok(s) => s,
            Err(s) => {
                return Done {
                    dw0: 0,
                    status: s,
                    lba: slba,
                };
            }
        };
        let written = self.sh.store.write_from(off, &src);
        drop(src);
        if let Err(e) = written {
            return self.media(sc::MEDIA_WRITE_FAULT, slba, "write", &e);
        }
        if (cmd.cdw12 & io::CDW12_FUA != 0 || !self.feat.wce)
            && let Err(e) = self.sh.store.flush()
        {
            return self.media(sc::MEDIA_WRITE_FAULT, slba, "FUA flush", &e);
        }
        self.sh.health.write_done(len);
        Done::ok(0)
    }

    fn write_zeroes(&mut self, cmd: &Command) -> Done {
        let slba = cmd.slba();
        let (off, len) = match self.blocks(cmd, slba, u64::from(cmd.nlb())) {
            Ok(r) => r,
            Err(d) => return d,
        };
        if let Err(e) = self.sh.store.deallocate(off, len) {
            return self.media(sc::MEDIA_WRITE_FAULT, slba, "write zeroes", &e);
        }
        if (cmd.cdw12 & io::CDW12_FUA != 0 || !self.feat.wce)
            && let Err(e) = self.sh.store.flush()
        {
            return self.media(sc::MEDIA_WRITE_FAULT, slba, "FUA flush", &e);
        }
        Done::ok(0)
    }

    fn dsm(&mut self, cmd: &Command) -> Done {
        if cmd.nsid != NSID {
            return Status::invalid(sc::INVALID_NAMESPACE).into();
        }
        let nr = (cmd.cdw10 & 0xff) as usize + 1;
        let mut raw = vec![0u8; nr * DsmRange::SIZE];
        if let Err(s) = self.dma_from_host(cmd, &mut raw) {
            return s.into();
        }
        let ranges: Vec<DsmRange> = raw
            .chunks_exact(DsmRange::SIZE)
            .map(DsmRange::parse)
            .collect();
        if cmd.cdw11 & io::DSM_AD == 0 {
            // Only integral-read/write hints: nothing to do.
            return Done::ok(0);
        }
        // Check every range before changing anything.
        let mut spans = Vec::with_capacity(ranges.len());
        for r in &ranges {
            match self.blocks(cmd, r.slba, u64::from(r.nlb)) {
                Ok(span) => spans.push(span),
                Err(d) => return d,
            }
        }
        for ((off, len), r) in spans.into_iter().zip(&ranges) {
            if let Err(e) = self.sh.store.deallocate(off, len) {
                return self.media(sc::MEDIA_WRITE_FAULT, r.slba, "deallocate", &e);
            }
        }
        Done::ok(0)
    }
}
