import ArgumentParser
import Logging
import Tulip
import TulipDaemon

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `tulipd`: runs Tulip protocol plugins on the listeners a JSON config declares.
///
/// The plugins come from the registry the executable passes to ``main(registry:)``, so `tulipd`
/// and `tulipd-test` share this command and differ only in what they register.
public struct TulipdCommand: ParsableCommand {
    /// The subcommands (`run` by default) and the help text.
    public static let configuration = CommandConfiguration(
        commandName: "tulipd",
        abstract: "Serve protocol plugins on the TCP and unix listeners a JSON config declares.",
        discussion: "Exit codes: 0 clean stop, 78 configuration error, 1 any other start-up failure.",
        subcommands: [
            Run.self, Check.self, Plugins.self, Status.self, Connections.self, Reload.self, Drain.self, Resume.self,
        ],
        defaultSubcommand: Run.self
    )

    /// Made by ArgumentParser while parsing, on the main thread.
    public init() {}
}

/// Options every subcommand that reads a config shares.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "The configuration file.")
    var config: String = "/etc/tulipd/tulipd.json"
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// EX_CONFIG from sysexits.h.
let exitConfigurationError: Int32 = 78

/// Loads and checks the config with loggers made by `makeLogger` from its `log` section; prints
/// the errors and exits 78 when it is not valid.
func loadPlan(
    _ options: ConfigOptions,
    registry: PluginRegistry,
    makeLogger: (LogConfiguration) throws -> Logger
) throws -> (plan: DaemonPlan, logger: Logger) {
    do {
        let configuration = try DaemonConfiguration.load(contentsOf: options.config)
        let logger = try makeLogger(configuration.log)
        return (try DaemonPlan(configuration: configuration, registry: registry, logger: logger), logger)
    } catch let error as ConfigurationErrors {
        for entry in error.errors { printError(located(entry, file: options.config)) }
        throw ExitCode(exitConfigurationError)
    } catch let error as ConfigurationError {
        printError(located(error, file: options.config))
        throw ExitCode(exitConfigurationError)
    }
}

/// The error with the config file's path in front, compiler style (`FILE:LINE:COLUMN: …`).
func located(_ error: ConfigurationError, file: String) -> String {
    var error = error
    if error.file == nil { error.file = file }
    return "\(error)"
}

func printError(_ message: String) {
    let line = "tulipd: " + message + "\n"
    _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
}

extension TulipdCommand {
    /// `tulipd run`: serve until SIGTERM or SIGINT; SIGHUP reloads the config file.
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run the daemon (the default).")

        @OptionGroup var options: ConfigOptions

        @Option(name: .long, help: "Override log.level (trace, debug, info, notice, warning, error, critical).")
        var logLevel: Logger.Level?

        func run() throws {
            // SIGHUP's default action ends the process: ignore it until the daemon handles it.
            signal(SIGHUP, SIG_IGN)
            let levelOverride = self.logLevel
            let plan: DaemonPlan
            let logger: Logger
            do {
                (plan, logger) = try loadPlan(self.options, registry: TulipdCommand.registry()) { log in
                    let level = levelOverride ?? log.level
                    var logger = Logger(label: "tulipd") { label in
                        DaemonLogHandler.make(label: label, format: log.format, level: level)
                    }
                    logger[metadataKey: "config_generation"] = "1"
                    return logger
                }
            } catch let exit as ExitCode where exit.rawValue == exitConfigurationError {
                DaemonSystemd.notifyStartupFailure(
                    errno: EINVAL,
                    status: "configuration error in \(self.options.config)"
                )
                throw exit
            }
            let loop = TulipLoop()
            loop.setExceptionHandler { context in
                logger.warning("\(context.message)", metadata: context.error.map { ["error": "\($0)"] } ?? [:])
            }
            let systemd: DaemonSystemd
            do {
                systemd = try DaemonSystemd.fromProcessEnvironment()
            } catch {
                printError("\(error)")
                try? loop.close()
                throw ExitCode.failure
            }
            let path = self.options.config
            let registry = try TulipdCommand.registry()
            let daemon = Daemon(plan: plan, loop: loop, logger: logger, systemd: systemd) { logger in
                try DaemonPlan.load(contentsOf: path, registry: registry, logger: logger)
            }
            do {
                try loop.runUntilComplete { try await daemon.run() }
            } catch let error as DaemonStartupError {
                printError("\(error)")
                try? loop.close()
                throw ExitCode.failure
            }
            try? loop.close()
        }
    }

    /// `tulipd check`: validate without binding.
    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a configuration without binding anything; prints ok or the errors."
        )

        @OptionGroup var options: ConfigOptions

        func run() throws {
            _ = try loadPlan(self.options, registry: TulipdCommand.registry()) { _ in
                Logger(label: "tulipd") { label in StderrLogHandler(label: label, format: .text, level: .warning) }
            }
            print("ok")
        }
    }

    /// `tulipd plugins`: list the registered plugins.
    struct Plugins: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the registered plugins, the listener kinds each serves, and a summary."
        )

        func run() throws {
            let entries = try TulipdCommand.registry().all
            let width = entries.map(\.name.count).max() ?? 0
            for entry in entries {
                let kinds = entry.supportedKinds.map(\.description).sorted().joined(separator: ",")
                let padded = entry.name + String(repeating: " ", count: width - entry.name.count)
                print("\(padded)  [\(kinds)]  \(entry.summary)")
            }
        }
    }
}
