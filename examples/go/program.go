package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"

	"github.com/export-image-provider/export-image-provider/sdk/go/exportimage"
)

// program is the Pulumi program: one ImageExport, through the SDK generated
// from the export-image plugin's schema (scripts/gen-sdk). Its inputs come
// from the stack's config (set with -config), like examples/basic's:
//
//	imageId (required), bucket (required), format (VMDK), prefix (exports/),
//	tags (a JSON object), waitForCompletion (true)
//
// and the provider's from export-image:* (region, credentials as secrets).
//
// With importID (an export task started outside Pulumi), the resource carries
// the `import` resource option: the engine reads the task through the plugin
// and adopts it if the program's inputs match it (the Go form of `pulumi
// import`, which needs the absent Go language host even without code
// generation).
func program(importID string) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error { return declare(ctx, importID) }
}

func declare(ctx *pulumi.Context, importID string) error {
	cfg := config.New(ctx, "")
	format := cfg.Get("format")
	if format == "" {
		format = "VMDK"
	}
	prefix := "exports/"
	if p, err := cfg.Try("prefix"); err == nil {
		prefix = p
	}
	args := &exportimage.ImageExportArgs{
		ImageId:         pulumi.String(cfg.Require("imageId")),
		DiskImageFormat: pulumi.String(format),
		S3Bucket:        pulumi.String(cfg.Require("bucket")),
		S3Prefix:        pulumi.String(prefix),
	}
	if cfg.Get("tags") != "" {
		var tags map[string]string
		if err := cfg.TryObject("tags", &tags); err != nil {
			return err
		}
		args.Tags = pulumi.ToStringMap(tags)
	}
	if wait, err := cfg.TryBool("waitForCompletion"); err == nil {
		args.WaitForCompletion = pulumi.Bool(wait)
	}
	var opts []pulumi.ResourceOption
	if importID != "" {
		opts = append(opts, pulumi.Import(pulumi.ID(importID)))
	}
	image, err := exportimage.NewImageExport(ctx, "image", args, opts...)
	if err != nil {
		return err
	}
	ctx.Export("exportImageTaskId", image.ExportImageTaskId)
	ctx.Export("status", image.Status)
	ctx.Export("s3Uri", image.S3Uri)
	ctx.Export("s3ObjectSize", image.S3ObjectSize)
	return nil
}
