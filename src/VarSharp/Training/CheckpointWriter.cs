using System.Text;
using VarSharp.Checkpoints;
using static TorchSharp.torch;

namespace VarSharp.Training;

/// <summary>
/// Writes a checkpoint folder atomically: everything goes into a hidden sibling folder first, which is renamed into
/// place only when complete, so a crash never leaves a half-written checkpoint under the final name. The folder is a
/// model folder (config.json + model.safetensors) that the rest of VarSharp loads, plus train_state.safetensors.
/// An existing folder is never replaced.
/// </summary>
public static class CheckpointWriter
{
    public const string ConfigFile = "config.json";
    public const string ModelFile = "model.safetensors";
    public const string TrainStateFile = "train_state.safetensors";

    public static void Write(string dir, string configJson, IEnumerable<KeyValuePair<string, Tensor>> model,
        IEnumerable<KeyValuePair<string, Tensor>> trainState, IReadOnlyDictionary<string, string>? trainStateMetadata = null)
    {
        var full = Path.GetFullPath(dir);
        if (Directory.Exists(full) || File.Exists(full))
            throw new VarSharpException($"Checkpoint folder {full} already exists; checkpoints are never overwritten.");
        var parent = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        var temp = Path.Combine(parent, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(temp);
        try
        {
            WriteText(Path.Combine(temp, ConfigFile), configJson);
            SafeTensors.Save(Path.Combine(temp, ModelFile), model);
            SafeTensors.Save(Path.Combine(temp, TrainStateFile), trainState, trainStateMetadata);
            Directory.Move(temp, full);
        }
        catch
        {
            try { Directory.Delete(temp, recursive: true); }
            catch (IOException) { }
            throw;
        }
    }

    /// <summary>Writes a small text file atomically (temp file in the same folder, flushed, renamed over the target).</summary>
    public static void WriteText(string path, string text)
    {
        var full = Path.GetFullPath(path);
        var temp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
        {
            stream.Write(Encoding.UTF8.GetBytes(text));
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, full, overwrite: true);
    }

    /// <summary>Whether <paramref name="dir"/> holds a complete checkpoint.</summary>
    public static bool IsCheckpoint(string dir) =>
        File.Exists(Path.Combine(dir, ConfigFile)) && File.Exists(Path.Combine(dir, ModelFile)) && File.Exists(Path.Combine(dir, TrainStateFile));
}
