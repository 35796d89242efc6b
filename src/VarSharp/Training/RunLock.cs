using System.Text.Json.Nodes;

namespace VarSharp.Training;

/// <summary>
/// One training process per run folder. The trainer holds run.lock open exclusively for as long as it runs (on Linux an
/// advisory flock, which the kernel releases when the process ends, however it ends), so a second trainer on the same
/// folder — the same resume started twice — fails at once instead of interleaving its log and checkpoints with the
/// first one's. The file itself means nothing: it stays after the run, and blocks nobody.
/// </summary>
public sealed class RunLock : IDisposable
{
    public const string FileName = "run.lock";

    private readonly FileStream _stream;

    private RunLock(FileStream stream) => _stream = stream;

    /// <summary>
    /// Takes the lock of <paramref name="runDir"/> (which must exist). Another holder is a <see cref="RunFolderInUseException"/>;
    /// any other failure (a read-only disk, no permission) is a <see cref="VarSharpException"/> saying so.
    /// </summary>
    public static RunLock Acquire(string runDir)
    {
        var path = Path.Combine(runDir, FileName);
        // A few tries: `status` takes the lock for an instant to see whether anyone holds it.
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                return new RunLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
            }
            catch (IOException e) when (IsSharingViolation(e) && attempt < 4)
            {
                Thread.Sleep(50);
            }
            catch (IOException e) when (IsSharingViolation(e))
            {
                throw new RunFolderInUseException(
                    $"Run folder {runDir} is in use by another training process{Holder(runDir)}; wait for it to end or stop it " +
                    "(Ctrl+C, or kill its process: it checkpoints first), or train into another folder.");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new VarSharpException($"Cannot lock run folder {runDir} for training: {e.Message.TrimEnd('.')}.", e);
            }
        }
    }

    /// <summary>
    /// Another handle holds the lock: ERROR_SHARING_VIOLATION on Windows; on Unix .NET reports flock's errno,
    /// EWOULDBLOCK (11 on Linux, 35 on macOS).
    /// </summary>
    private static bool IsSharingViolation(IOException e) =>
        e.HResult == unchecked((int)0x80070020) || (!OperatingSystem.IsWindows() && e.HResult == (OperatingSystem.IsMacOS() ? 35 : 11));

    /// <summary>
    /// Whether a trainer holds <paramref name="runDir"/> now: probed by opening the lock file exclusively for an instant,
    /// never creating or deleting it.
    /// </summary>
    public static bool IsHeld(string runDir)
    {
        try
        {
            using var probe = new FileStream(Path.Combine(runDir, FileName), FileMode.Open, FileAccess.Read, FileShare.None);
            return false;
        }
        catch (IOException e) when (IsSharingViolation(e))
        {
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;   // no lock file, or one this user may not open: no trainer of ours holds it
        }
    }

    /// <summary>Who holds the folder, from its log's last start line (the lock file itself cannot be read while held).</summary>
    private static string Holder(string runDir)
    {
        var start = TrainLog.Read(Path.Combine(runDir, RunFolder.LogFile)).LastOrDefault(l => (string?)l["kind"] == "start");
        // The log's last start may be a dead session's while a resume is still setting up, hence "per its log".
        return start?["pid"] is JsonValue pid && start["started"] is JsonValue started ? $" (pid {pid}, started {started}, per its log)" : "";
    }

    /// <summary>
    /// Lets go. The file stays: deleting it could let a trainer that opened it a moment earlier lock a file no one else
    /// sees, while a third one creates and locks a new one. A leftover run.lock blocks nobody.
    /// </summary>
    public void Dispose() => _stream.Dispose();
}

/// <summary>Another training process holds the run folder: nothing of it may be touched, not even to clean up.</summary>
public sealed class RunFolderInUseException(string message) : VarSharpException(message);
