using System.Text;
using VarSharp.Checkpoints;
using static TorchSharp.torch;

namespace VarSharp.Training;

/// <summary>
/// Writes a training checkpoint atomically: everything goes into a hidden sibling folder first, which is renamed into
/// place only when complete, so a crash never leaves a half-written checkpoint under the final name. Layout:
/// <code>
/// step-N/model/                    a model bundle (config.json + model.safetensors + manifest.json of SHA-256s),
///                                  written by <see cref="ModelBundle.Write"/>: every verb loads it, and verifies it
/// step-N/train_state.safetensors   optimizer moments, step counts, RNG and data position (not part of the model)
/// </code>
/// The train state sits beside the bundle rather than inside it because a bundle refuses files its manifest does not
/// list. An existing checkpoint folder is never replaced.
/// </summary>
public static class CheckpointWriter
{
    public const string ModelDir = "model";
    public const string ConfigFile = ModelBundle.ConfigFileName;
    public const string ModelFile = ModelBundle.WeightsFileName;
    public const string TrainStateFile = "train_state.safetensors";

    /// <summary>The model bundle inside a checkpoint folder.</summary>
    public static string ModelFolderOf(string checkpoint) => Path.Combine(checkpoint, ModelDir);

    public static string ConfigPath(string checkpoint) => Path.Combine(checkpoint, ModelDir, ConfigFile);
    public static string ModelPath(string checkpoint) => Path.Combine(checkpoint, ModelDir, ModelFile);
    public static string TrainStatePath(string checkpoint) => Path.Combine(checkpoint, TrainStateFile);

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
            ModelBundle.Write(Path.Combine(temp, ModelDir), configJson, model);
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

    /// <summary>Whether <paramref name="dir"/> holds a complete checkpoint (bundle manifest and train state present).</summary>
    public static bool IsCheckpoint(string dir) =>
        File.Exists(ConfigPath(dir)) && File.Exists(ModelPath(dir)) && ModelBundle.IsBundle(ModelFolderOf(dir)) && File.Exists(TrainStatePath(dir));
}
