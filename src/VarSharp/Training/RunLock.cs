using System.Text.Json.Nodes;

namespace VarSharp.Training;

/// <summary>
/// One training process per run folder. The trainer holds run.lock open exclusively for as long as it runs (on Linux an
/// advisory flock, which the kernel releases when the process ends, however it ends), so a second trainer on the same
/// folder — the same resume started twice — fails at once instead of interleaving its log and checkpoints with the
/// first one's. The file itself means nothing: a leftover run.lock of a dead process does not block.
/// </summary>
public sealed class RunLock : IDisposable
{
    public const string FileName = "run.lock";

    private readonly FileStream _stream;
    private readonly string _path;

    private RunLock(FileStream stream, string path)
    {
        _stream = stream;
        _path = path;
    }

    /// <summary>Takes the lock of <paramref name="runDir"/> (which must exist), or throws a one-sentence <see cref="VarSharpException"/>.</summary>
    public static RunLock Acquire(string runDir)
    {
        var path = Path.Combine(runDir, FileName);
        try
        {
            return new RunLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None), path);
        }
        catch (IOException)
        {
            throw new VarSharpException(
                $"Run folder {runDir} is in use by another training process{Holder(runDir)}; wait for it to end or stop it " +
                "(Ctrl+C, or kill PID: it checkpoints first), or train into another folder.");
        }
    }

    /// <summary>
    /// Whether a trainer holds <paramref name="runDir"/> now: probed by opening the lock file exclusively for an instant,
    /// never creating or deleting it.
    /// </summary>
    public static bool IsHeld(string runDir)
    {
        try
        {
            using var probe = new FileStream(Path.Combine(runDir, FileName), FileMode.Open, FileAccess.ReadWrite, FileShare.None);
            return false;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return false;
        }
        catch (IOException)
        {
            return true;
        }
    }

    /// <summary>Who holds the folder, from its log's last start line (the lock file itself cannot be read while held).</summary>
    private static string Holder(string runDir)
    {
        var start = TrainLog.Read(Path.Combine(runDir, RunFolder.LogFile)).LastOrDefault(l => (string?)l["kind"] == "start");
        return start?["pid"] is JsonValue pid && start["started"] is JsonValue started ? $" (pid {pid}, started {started})" : "";
    }

    public void Dispose()
    {
        // Deleted while still held, so no other process can take a lock on a file about to disappear.
        try
        {
            File.Delete(_path);
        }
        catch (IOException)
        {
            // Only tidiness is lost: a leftover run.lock blocks nobody.
        }
        _stream.Dispose();
    }
}
