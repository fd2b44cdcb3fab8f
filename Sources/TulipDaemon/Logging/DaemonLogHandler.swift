import Logging
import TulipSystemd

/// The log handler for `log.format` (ARCHITECTURE §5): `text` and `json` on standard error,
/// `journald` natively with `sd_journal_sendv` (falling back to text on standard error when the
/// journal cannot be reached), and `auto`: journald when standard error is connected to the
/// journal (`JOURNAL_STREAM` names it), else text.
public enum DaemonLogHandler {
    /// Makes the handler for `format` at `level`.
    public static func make(
        label: String,
        format: LogConfiguration.Format,
        level: Logger.Level,
        journalStream: String? = nil
    ) -> any LogHandler {
        let useJournal: Bool
        if format == .journald {
            useJournal = true
        } else if format == .auto {
            useJournal = JournaldLogHandler.standardErrorIsJournal(environment: journalStream)
        } else {
            useJournal = false
        }
        let text = StderrLogHandler(label: label, format: format == .json ? .json : .text, level: level)
        guard useJournal else { return text }
        return JournaldLogHandler(identifier: "tulipd", level: level, fallback: text)
    }
}
