using VarSharp.Checkpoints;
using VarSharp.Sampling;

namespace VarSharp.Web;

/// <summary>One loaded model: its pipeline (used by the batcher thread only) and what clients may know about it.</summary>
public sealed class ServedModel : IDisposable
{
    internal ServedModel(string name, VarPipeline pipeline, ModelIntegrity integrity)
    {
        Name = name;
        Pipeline = pipeline;
        Integrity = integrity;
        ClassNames = pipeline.ClassNames;
        var cfg = pipeline.Model.Config;
        DefaultTopK = pipeline.DefaultOptions().ResolveTopK(pipeline.VocabSize);
        PatchNums = cfg.PatchNums;
    }

    public string Name { get; }
    internal VarPipeline Pipeline { get; }
    public IReadOnlyList<string> ClassNames { get; }
    public int NumClasses => Pipeline.NumClasses;
    public int ImageSize => Pipeline.ImageSize;
    public int Channels => Pipeline.Tokenizer.Config.InChannels;
    public int VocabSize => Pipeline.VocabSize;
    public IReadOnlyList<int> PatchNums { get; }
    public int DefaultTopK { get; }
    public double DefaultCfg => Pipeline.Defaults.Cfg;
    public double DefaultTopP => Pipeline.Defaults.TopP;

    /// <summary>What was checked when the model was loaded.</summary>
    public ModelIntegrity Integrity { get; }

    public void Dispose() => Pipeline.Dispose();
}

/// <summary>
/// How far a served model was verified at load: <c>signature</c> (a bundle whose manifest a trusted key signed:
/// <c>serve --trust</c>), <c>manifest</c> (a bundle whose files match its manifest; <see cref="SignedBy"/> is the key it
/// claims, not checked) or <c>none</c> (a plain model folder).
/// </summary>
public sealed record ModelIntegrity(string Check, string? SignedBy)
{
    internal static ModelIntegrity Of(string dir, BundleTrust? trust)
    {
        if (!ModelBundle.IsBundle(dir)) return new("none", null);
        string? signer;
        try
        {
            signer = BundleSignature.SignedBy(dir);
        }
        catch (ModelBundleException)
        {
            signer = null;   // a malformed signature file: only --trust makes that an error
        }
        return new(trust is null ? "manifest" : "signature", signer);
    }
}

/// <summary>The models a server holds, loaded (and their bundle manifests verified) when the server starts.</summary>
public sealed class ModelRegistry : IDisposable
{
    private readonly Dictionary<string, ServedModel> _byName;

    private ModelRegistry(IReadOnlyList<ServedModel> models)
    {
        Models = models;
        _byName = models.ToDictionary(m => m.Name, StringComparer.OrdinalIgnoreCase);
    }

    /// <summary>In the order given; the first is the default.</summary>
    public IReadOnlyList<ServedModel> Models { get; }

    public ServedModel Default => Models[0];

    public ServedModel? Find(string name) => _byName.GetValueOrDefault(name);

    /// <summary>Loads every model of <paramref name="options"/>; a model that cannot be loaded is a one-sentence error naming it.</summary>
    public static ModelRegistry Load(ServeOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var loaded = new List<ServedModel>();
        try
        {
            foreach (var source in options.Models)
            {
                if (!Directory.Exists(source.Directory))
                    throw new VarSharpException($"cannot serve model '{source.Name}': folder {source.Directory} does not exist.");
                VarPipeline pipe;
                try
                {
                    pipe = VarPipeline.Load(source.Directory, options.Device, options.Trust, options.Dtype);
                }
                catch (VarSharpException e)
                {
                    throw new VarSharpException($"cannot serve model '{source.Name}': {e.Message}", e);
                }
                try
                {
                    loaded.Add(new ServedModel(source.Name, pipe, ModelIntegrity.Of(source.Directory, options.Trust)));
                }
                catch
                {
                    pipe.Dispose();
                    throw;
                }
            }
            return new ModelRegistry(loaded);
        }
        catch
        {
            foreach (var m in loaded) m.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var m in Models) m.Dispose();
    }
}
